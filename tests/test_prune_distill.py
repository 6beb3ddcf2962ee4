"""labkit.prune.distill: the distillation loss against a hand computation, the frozen teacher."""
import math

import pytest
import torch

from labkit.prune.distill import distillation_loss, frozen_teacher, train_step


def test_distillation_loss_is_cross_entropy_without_teacher_weight_and_grows_with_disagreement():
    student, labels = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0])
    assert distillation_loss(student, -student, labels, alpha=0.0) == pytest.approx(
        torch.nn.functional.cross_entropy(student, labels).item())
    agreeing = distillation_loss(student, student, labels, alpha=1.0).item()
    disagreeing = distillation_loss(student, student.flip(1), labels, alpha=1.0).item()
    assert agreeing == pytest.approx(0.0, abs=1e-6) and disagreeing > 0.1


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_distillation_loss_matches_a_hand_computation(temperature):
    """Student logits (0, 0): softmax (1/2, 1/2) at any T. Teacher logits (T ln 3, 0): softmax (3/4, 1/4) at T.
    KL(teacher || student) = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308; CE of label 0 = ln 2. Two equal rows: the
    batch mean is one row's value."""
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[temperature * math.log(3.0), 0.0]] * 2)
    labels = torch.tensor([0, 0])
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    expected = 0.5 * math.log(2.0) + 0.5 * temperature ** 2 * kl
    loss = distillation_loss(student, teacher, labels, alpha=0.5, temperature=temperature)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_the_frozen_teacher_keeps_the_dense_weights_while_the_student_trains():
    torch.manual_seed(0)
    student = torch.nn.Linear(4, 3)
    teacher = frozen_teacher(student)
    before = teacher.weight.detach().clone()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    for _ in range(3):
        train_step(student, torch.randn(8, 4), torch.randint(0, 3, (8,)), optimizer, teacher=teacher)
    assert torch.equal(teacher.weight, before) and not torch.equal(student.weight, before)
    assert not teacher.training and not any(parameter.requires_grad for parameter in teacher.parameters())
