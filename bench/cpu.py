"""CPU time of the system's processes (each with its children: gunicorn workers) and MariaDB."""

from __future__ import annotations

import psutil


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def database_processes() -> list[psutil.Process]:
    names = {"mariadbd", "mysqld"}
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in names]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        # Children already reaped by a gunicorn master count in children_* of that master.
        total += times.user + times.system + times.children_user + times.children_system
    return total
