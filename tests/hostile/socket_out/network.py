"""Hostile: opens sockets (a listener the test started on the grader's 127.0.0.1, and the internet)."""
import socket


def load_model(path):
    reached = []
    for address in (("127.0.0.1", __PORT__), ("1.1.1.1", 53)):
        try:
            socket.create_connection(address, timeout=2).close()
            reached.append(address)
        except OSError as error:
            print("blocked:", address, error)
    raise RuntimeError(f"network reached: {reached}")
