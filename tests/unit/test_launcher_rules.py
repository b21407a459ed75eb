"""Launcher rules that need no service: loopback only, Maven coordinates, pid ownership."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from civsync.config import load_settings
from civsync.services import LauncherError, LocalServices
from civsync.services.maven import Artifact
from civsync.services.process import ManagedProcess


def test_the_launcher_refuses_a_non_loopback_endpoint(tmp_path: Path) -> None:
    settings = load_settings(kafka={"bootstrap_servers": "kafka.prod.internal:9092"})
    with pytest.raises(LauncherError, match="only starts services on loopback"):
        LocalServices(tmp_path, settings).kafka()


def test_the_launcher_derives_ports_from_settings(tmp_path: Path) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:29094"},
        registry={"url": "http://localhost:28081/apis/ccompat/v7"},
    )
    services = LocalServices(tmp_path, settings)
    kafka = services.kafka()
    assert (kafka.port, kafka.controller_port, kafka.secure_port) == (29092, 29093, 29094)
    assert (services.registry().host, services.registry().port) == ("localhost", 28081)
    assert not services.registry().tls  # an http:// URL: plain HTTP, as asked
    assert [s.store.port for s in services.stores()] == [5433, 5434]
    secure = LocalServices(tmp_path, load_settings()).registry()
    assert secure.tls
    assert secure.url == "https://127.0.0.1:8081"
    assert secure.ca_file == tmp_path / "registry" / "ca.crt"


def test_an_archive_artifact_excludes_its_transitive_dependencies() -> None:
    archive = Artifact(
        "io.apicurio", "app", "1.0", classifier="all", type="tar.gz", transitive=False
    )
    xml = archive.as_dependency()
    assert "<type>tar.gz</type>" in xml
    assert "<classifier>all</classifier>" in xml
    assert "<groupId>*</groupId>" in xml
    assert "<exclusions>" not in Artifact("g", "a", "1").as_dependency()


def test_a_pid_file_naming_someone_elses_process_is_not_ours(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this pytest process: alive, but not marked
    process = ManagedProcess("x", pid_file, tmp_path / "x.log", marker=str(tmp_path / "unique"))
    assert process.pid() is None
    assert process.stop() is False
    assert not pid_file.exists()
