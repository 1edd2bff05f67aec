"""The skopeo command a pull runs (pure): TLS only off for loopback and
listed registries, the CA folder and auth file passed along, a digest
winning over a tag, and skopeo's message picked out of its log."""

from __future__ import annotations

from pathlib import Path

from supervisor.rootfs.pull import PullSettings, host_platform, skopeo_copy_argv, skopeo_error

D = "sha256:" + "ab" * 32


def test_loopback_is_reached_without_tls(tmp_path: Path) -> None:
    argv = skopeo_copy_argv("docker://127.0.0.1:5000/a:1", tmp_path / "s", PullSettings(), None)
    assert "--src-tls-verify=false" in argv
    assert argv[-2:] == ["docker://127.0.0.1:5000/a:1", f"oci:{tmp_path / 's'}:1"]
    os_name, arch = host_platform()
    assert argv[:5] == ["skopeo", "--override-os", os_name, "--override-arch", arch]
    assert "--src-tls-verify=false" in skopeo_copy_argv("docker://localhost/a:1", tmp_path, PullSettings(), None)


def test_other_registries_need_tls_unless_listed(tmp_path: Path) -> None:
    certs = tmp_path / "certs.d"
    (certs / "reg.lan:5000").mkdir(parents=True)
    settings = PullSettings(certs_dir=certs)
    argv = skopeo_copy_argv("docker://reg.lan:5000/a:1", tmp_path / "s", settings, None)
    assert not any("tls-verify" in a for a in argv)
    assert f"--src-cert-dir={certs / 'reg.lan:5000'}" in argv
    argv = skopeo_copy_argv("docker://docker.io/library/busybox:latest", tmp_path, settings, None)
    assert not any("tls-verify" in a or "cert-dir" in a for a in argv)
    listed = PullSettings(insecure_registries=("reg.lan:5000",))
    assert "--src-tls-verify=false" in skopeo_copy_argv("docker://reg.lan:5000/a:1", tmp_path, listed, None)


def test_auth_file_default_only_when_present_and_client_file_always(tmp_path: Path) -> None:
    default = tmp_path / "auth.json"
    settings = PullSettings(auth_file=default)
    argv = skopeo_copy_argv("docker://reg.lan/a:1", tmp_path, settings, None)
    assert not any("authfile" in a for a in argv)
    default.write_text("{}")
    assert f"--src-authfile={default}" in skopeo_copy_argv("docker://reg.lan/a:1", tmp_path, settings, None)
    mine = tmp_path / "mine.json"
    assert f"--src-authfile={mine}" in skopeo_copy_argv("docker://reg.lan/a:1", tmp_path, settings, mine)


def test_digest_wins_over_tag_and_archives_pass_through(tmp_path: Path) -> None:
    argv = skopeo_copy_argv(f"docker://reg.lan/a:1@{D}", tmp_path, PullSettings(), None)
    assert f"docker://reg.lan/a@{D}" in argv
    assert argv[-1] == f"oci:{tmp_path}:1"  # the tag names it in the store
    argv = skopeo_copy_argv(f"docker://reg.lan/a@{D}", tmp_path, PullSettings(), None)
    assert argv[-1] == f"oci:{tmp_path}:pulled"  # no tag: the scratch tag
    argv = skopeo_copy_argv("docker-archive:/x.tar", tmp_path, PullSettings(), None)
    assert "docker-archive:/x.tar" in argv and not any("tls" in a or "auth" in a for a in argv)


def test_skopeo_error_is_the_last_fatal_message() -> None:
    log = (
        'time="2026-01-01T00:00:00Z" level=warning msg="noise"\n'
        'time="2026-01-01T00:00:00Z" level=fatal msg="initializing source docker://x: say \\"no\\""\n'
    )
    assert skopeo_error(log) == 'initializing source docker://x: say "no"'
    assert skopeo_error("plain failure\n\n") == "plain failure"
    assert skopeo_error("") == "skopeo failed without a message"


def test_a_ca_folder_means_verified_tls_even_on_loopback(tmp_path: Path) -> None:
    certs = tmp_path / "certs.d"
    (certs / "127.0.0.1:5000").mkdir(parents=True)
    argv = skopeo_copy_argv("docker://127.0.0.1:5000/a:1", tmp_path, PullSettings(certs_dir=certs), None)
    assert f"--src-cert-dir={certs / '127.0.0.1:5000'}" in argv and not any("tls-verify" in a for a in argv)
    listed = PullSettings(certs_dir=certs, insecure_registries=("127.0.0.1:5000",))
    assert "--src-tls-verify=false" in skopeo_copy_argv("docker://127.0.0.1:5000/a:1", tmp_path, listed, None)
