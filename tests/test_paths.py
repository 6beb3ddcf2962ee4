"""labkit.paths: the course folder, in a checkout and from an installed wheel."""

from labkit.paths import find_repo_root


def test_installed_package_finds_the_course_folder_from_the_notebooks_working_directory(tmp_path):
    site_packages, course = tmp_path / "site-packages", tmp_path / "labkit-course"
    (course / "checks").mkdir(parents=True)
    (course / "notebooks").mkdir()
    site_packages.mkdir()
    assert find_repo_root(site_packages, cwd=course / "notebooks", environ={}) == course
    assert find_repo_root(site_packages, cwd=tmp_path, environ={"LABKIT_ROOT": str(course)}) == course
    assert find_repo_root(course, cwd=tmp_path, environ={}) == course  # a checkout: the package's parent
