"""nixos_config's deployment keys against fake NixOS hosts: real sshd, real files on the host."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from fediversity_providers import AccessDenied, Conflict, InvalidInput, ProviderError
from fediversity_providers.providers.nixos_config import deploy
from fediversity_providers.testing import InProcessDriver, SubprocessDriver, conformance

TYPE = "nixos_config"


@pytest.fixture
def driver():
    with InProcessDriver() as d:
        yield d


@pytest.fixture
def t1(toplevel_builder):
    return toplevel_builder("keys-one")


@pytest.fixture
def t2(toplevel_builder):
    return toplevel_builder("keys-two")


def secret() -> str:
    return f"S3CRET-{uuid.uuid4().hex}"


def inputs_for(host, toplevel, keys=None, **extra):
    ssh = {"connectTimeout": 3, **extra.pop("ssh", {})}
    return {"ssh": host.ssh_input(**ssh), "toplevel": str(toplevel), "keys": keys or {}, **extra}


def stat_of(host, path):
    """``user:group:mode`` of a file on the host, as the host's own stat sees it."""
    return host.run(f"stat -c '%U:%G:%a' {path}").stdout.strip()


def content_of(host, path) -> bytes:
    return host.file(path).read_bytes()


def files_holding(host, needle: bytes) -> list[str]:
    """Every file of the host (its own root layer and its own /nix) that holds ``needle``."""
    found = []
    for top in (host.root, host.path("/nix")):
        for base, dirs, files in os.walk(top):
            for name in files:
                p = os.path.join(base, name)
                try:
                    if not os.path.islink(p) and needle in open(p, "rb").read():
                        found.append(p)
                except OSError:
                    continue
    return found


# -- the lifecycle ---------------------------------------------------------
def test_conformance_with_keys(fake_nixos_hosts, t1, t2):
    host, = fake_nixos_hosts(1)
    first, second = secret(), secret()
    keys1 = {"app": {"text": first, "user": "nobody", "group": "nogroup", "permissions": "0440"},
             "old": {"text": "dropped on update"}}
    keys2 = {"app": {"text": second, "user": "nobody", "group": "nogroup", "permissions": "0440"},
             "late": {"text": "after", "uploadAt": "post-activation", "destDir": "/var/lib/keys"}}

    def app_key_is(text):
        def check(inputs, outputs):
            assert content_of(host, "/run/keys/app") == text.encode()
            assert outputs["keys"]["app"] == {"path": "/run/keys/app", "user": "nobody", "group": "nogroup",
                                              "permissions": "0440", "uploadAt": "pre-activation", "status": "present"}
        return check

    def old_is_gone(inputs, outputs):
        assert not os.path.lexists(host.file("/run/keys/old"))
        assert content_of(host, "/var/lib/keys/late") == b"after"

    with InProcessDriver() as driver:
        steps = conformance.check(driver, TYPE, inputs_for(host, t1, keys1), inputs_for(host, t2, keys2),
                                  checks={"create": [app_key_is(first)], "update": [app_key_is(second), old_is_gone]})
    assert "read after delete says not found" in steps
    assert "update: old_is_gone" in steps
    # onDelete = keep: the machine keeps its system, and the keys it uses
    assert content_of(host, "/run/keys/app") == second.encode()


def test_pre_activation_key_is_there_with_owner_and_mode_when_activation_runs(fake_nixos_hosts, driver,
                                                                               toplevel_builder):
    host, = fake_nixos_hosts(1)
    checks_key = toplevel_builder("checks-key", hook=(
        "[ \"$(stat -c '%U:%G:%a' /run/keys/db-password 2>/dev/null)\" = daemon:nogroup:400 ] "
        "&& [ \"$(cat /run/keys/db-password)\" = hunter2-hunter2 ] "
        "|| { echo 'the key is not there before activation' >&2; exit 7; }; "
        "echo key-seen >> /var/lib/fake-nixos/key-seen"))
    with pytest.raises(Conflict, match="the key is not there before activation"):  # the hook does check
        driver.create(TYPE, inputs_for(host, checks_key))
    keys = {"db-password": {"text": "hunter2-hunter2", "user": "daemon", "group": "nogroup"}}
    out = driver.create(TYPE, inputs_for(host, checks_key, keys))
    assert out["toplevel"] == checks_key.path
    assert host.file("/var/lib/fake-nixos/key-seen").read_text() == "key-seen\n"
    assert out["keys"]["db-password"]["status"] == "present"
    assert stat_of(host, "/run/keys/db-password") == "daemon:nogroup:400"


def test_post_activation_key_arrives_after_activation(fake_nixos_hosts, driver, toplevel_builder):
    host, = fake_nixos_hosts(1)
    expects_none = toplevel_builder("key-not-yet", hook=(
        "if [ -e /run/keys/late ]; then echo 'post-activation key already there' >&2; exit 7; fi; "
        "echo absent >> /var/lib/fake-nixos/key-seen"))
    keys = {"late": {"keyFile": None, "text": "after-activation", "uploadAt": "post-activation",
                     "permissions": "600"}}
    host.run("mkdir -p /run/keys && echo early > /run/keys/late")
    with pytest.raises(Conflict, match="post-activation key already there"):  # the hook does check
        driver.create(TYPE, inputs_for(host, expects_none))
    host.run("rm /run/keys/late")
    out = driver.create(TYPE, inputs_for(host, expects_none, keys))
    assert host.file("/var/lib/fake-nixos/key-seen").read_text() == "absent\n"
    assert content_of(host, "/run/keys/late") == b"after-activation"
    assert out["keys"]["late"] == {"path": "/run/keys/late", "user": "root", "group": "root", "permissions": "0600",
                                   "uploadAt": "post-activation", "status": "present"}


def test_failed_activation_uploads_no_post_activation_key(fake_nixos_hosts, driver, toplevel_builder):
    host, = fake_nixos_hosts(1)
    broken = toplevel_builder("keys-broken", fail=True)
    keys = {"pre": {"text": "before-it"}, "post": {"text": "after-it", "uploadAt": "post-activation"}}
    with pytest.raises(ProviderError, match="failed with status 4"):
        driver.create(TYPE, inputs_for(host, broken, keys))
    assert content_of(host, "/run/keys/pre") == b"before-it"
    assert not os.path.lexists(host.file("/run/keys/post"))


def test_key_file_and_persistent_dest_dir(fake_nixos_hosts, driver, t1, tmp_path):
    host, = fake_nixos_hosts(1)
    source = tmp_path / "token"
    source.write_bytes(b"line one\nline two\n\x00binary\xff")
    keys = {"token": {"keyFile": str(source), "destDir": "/var/lib/keys/app", "permissions": "0640"}}
    out = driver.create(TYPE, inputs_for(host, t1, keys))
    assert content_of(host, "/var/lib/keys/app/token") == source.read_bytes()
    assert out["keys"]["token"]["path"] == "/var/lib/keys/app/token"
    assert stat_of(host, "/var/lib/keys/app") == "root:root:751", "a directory it creates: others may only traverse"
    assert stat_of(host, "/var/lib/keys/app/token") == "root:root:640"
    assert not [n for n in os.listdir(host.file("/var/lib/keys/app")) if n != "token"], "no temporary file left"
    # the deployer's file changes: read sees the machine's copy differ
    source.write_bytes(b"rotated")
    assert driver.read(TYPE, inputs_for(host, t1, keys), out)["keys"]["token"]["status"] == "changed"


def test_an_existing_dest_dir_is_left_as_it_is(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    host.run("mkdir -p /run/keys && chgrp daemon /run/keys && chmod 0750 /run/keys")  # as NixOS makes it (group keys)
    driver.create(TYPE, inputs_for(host, t1, {"k": {"text": "value-one"}}))
    assert stat_of(host, "/run/keys") == "root:daemon:750"


# -- drift -----------------------------------------------------------------
def test_read_reports_a_key_missing_changed_or_rechowned(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    keys = {name: {"text": f"content-of-{name}", "user": "nobody", "group": "nogroup"}
            for name in ("gone", "edited", "chowned", "chmodded", "fine")}
    ins = inputs_for(host, t1, keys)
    recorded = driver.create(TYPE, ins)
    assert {k["status"] for k in recorded["keys"].values()} == {"present"}
    assert driver.read(TYPE, ins, recorded) == recorded

    host.run("rm /run/keys/gone; printf 'content-of-edites' > /run/keys/edited; "
             "chown root /run/keys/chowned; chmod 0644 /run/keys/chmodded")
    observed = driver.read(TYPE, ins, recorded)
    assert observed != recorded
    got = observed["keys"]
    assert got["gone"] == {"path": "/run/keys/gone", "user": None, "group": None, "permissions": None,
                           "uploadAt": "pre-activation", "status": "missing"}
    assert got["edited"]["status"] == "changed" and got["edited"]["permissions"] == "0400"
    assert got["chowned"]["status"] == "changed" and got["chowned"]["user"] == "root"
    assert got["chmodded"]["status"] == "changed" and got["chmodded"]["permissions"] == "0644"
    assert got["fine"] == recorded["keys"]["fine"]
    # a directory where the key should be is not the key
    host.run("rm /run/keys/fine && mkdir /run/keys/fine")
    assert driver.read(TYPE, ins, recorded)["keys"]["fine"]["status"] == "changed"
    host.run("rmdir /run/keys/fine")

    # applying again converges
    again = driver.update(TYPE, ins, observed, ins)
    assert again == recorded
    assert content_of(host, "/run/keys/edited") == b"content-of-edited"
    assert stat_of(host, "/run/keys/chowned") == "nobody:nogroup:400"


def test_removed_and_moved_keys_are_removed_on_update(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    before = {"stays": {"text": "one-one"}, "dropped": {"text": "two-two"}, "moves": {"text": "three-three"}}
    after = {"stays": {"text": "one-one"}, "moves": {"text": "three-three", "destDir": "/var/lib/keys"}}
    out = driver.create(TYPE, inputs_for(host, t1, before))
    host.run("echo not-a-key > /run/keys/unrelated")
    new = driver.update(TYPE, inputs_for(host, t1, before), out, inputs_for(host, t1, after))
    assert sorted(new["keys"]) == ["moves", "stays"]
    assert sorted(os.listdir(host.file("/run/keys"))) == ["stays", "unrelated"], "only what it put there is removed"
    assert content_of(host, "/var/lib/keys/moves") == b"three-three"
    # no keys at all: every one is removed
    driver.update(TYPE, inputs_for(host, t1, after), new, inputs_for(host, t1, {}))
    assert sorted(os.listdir(host.file("/run/keys"))) == ["unrelated"]
    assert not os.path.lexists(host.file("/var/lib/keys/moves"))


def test_delete_with_rollback_removes_the_keys_keep_leaves_them(fake_nixos_hosts, driver, t1, toplevel_builder):
    keep_host, back_host = fake_nixos_hosts(2)
    base = toplevel_builder("keys-base")
    driver.delete(TYPE, inputs_for(back_host, base), driver.create(TYPE, inputs_for(back_host, base)))
    keys = {"k": {"text": "kept-or-not"}}
    for host, on_delete in ((keep_host, "keep"), (back_host, "rollback")):
        ins = inputs_for(host, t1, keys, onDelete=on_delete)
        driver.delete(TYPE, ins, driver.create(TYPE, ins))
    assert content_of(keep_host, "/run/keys/k") == b"kept-or-not"
    assert back_host.current_system() == base.path
    assert not os.path.lexists(back_host.file("/run/keys/k"))


def test_dry_activate_uploads_nothing_and_reports_the_keys(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    out = driver.create(TYPE, inputs_for(host, t1, {"k": {"text": "not-yet"}}, action="dry-activate"))
    assert out["keys"]["k"]["status"] == "missing"
    assert not os.path.lexists(host.file("/run/keys/k"))


def test_keys_with_a_non_root_user_through_sudo(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    from fediversity_providers.testing import require_executable
    require_executable("sudo", "sudo")
    ssh = host.add_deploy_user("deploy")
    out = driver.create(TYPE, inputs_for(host, t1, {"k": {"text": "through-sudo", "user": "deploy"}}, ssh=ssh))
    assert out["keys"]["k"]["status"] == "present"
    assert stat_of(host, "/run/keys/k") == "deploy:root:400"


def test_a_key_for_a_user_the_new_system_creates_is_root_owned_until_then(fake_nixos_hosts, driver,
                                                                            toplevel_builder):
    host, = fake_nixos_hosts(1)
    assert host.run("id -u fp-newuser", check=False).returncode != 0
    # The activation creates the user (as NixOS's does), then records who owns the key at that moment.
    creates_user = toplevel_builder("creates-user", hook=(
        "getent group fp-newgroup >/dev/null || groupadd -r fp-newgroup; "
        "id -u fp-newuser >/dev/null 2>&1 || useradd -r -g fp-newgroup fp-newuser; "
        "stat -c '%U:%G:%a' /run/keys/svc-secret > /var/lib/fake-nixos/owner-at-activation"))
    keys = {"svc-secret": {"text": "for-the-new-user", "user": "fp-newuser", "group": "fp-newgroup"}}
    out = driver.create(TYPE, inputs_for(host, creates_user, keys))
    assert host.file("/var/lib/fake-nixos/owner-at-activation").read_text().strip() == "root:root:400", \
        "before its user exists the key is root's, with its mode"
    assert stat_of(host, "/run/keys/svc-secret") == "fp-newuser:fp-newgroup:400"
    assert content_of(host, "/run/keys/svc-secret") == b"for-the-new-user"
    assert out["keys"]["svc-secret"]["status"] == "present" and out["keys"]["svc-secret"]["user"] == "fp-newuser"
    assert driver.read(TYPE, inputs_for(host, creates_user, keys), out)["keys"] == out["keys"]


def test_a_user_missing_even_after_activation_is_an_error_naming_the_key(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    with pytest.raises(ProviderError) as caught:
        driver.create(TYPE, inputs_for(host, t1, {"k": {"text": "for-nobody-here", "user": "no-such-user"}}))
    message = str(caught.value)
    assert "keys.k" in message and "no-such-user" in message
    assert "the new system is active, and the key stays owned by root" in message
    assert stat_of(host, "/run/keys/k") == "root:root:400", "readable by no one but root"
    assert [n for n in os.listdir(host.file("/run/keys")) if n.startswith(".")] == [], "no temporary file left"
    with pytest.raises(ProviderError, match="cannot give the key to no-such-user"):  # a post-activation key: at once
        driver.create(TYPE, inputs_for(host, t1, {"k2": {"text": "x", "user": "no-such-user",
                                                         "uploadAt": "post-activation"}}))


# -- hostile inputs ----------------------------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "a/b", "../etc/passwd", "new\nline", "", "x" * 201])
def test_bad_key_names_are_refused(driver, t1, name):
    ssh = {"host": "127.0.0.1", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5vY2xx"}
    with pytest.raises(InvalidInput) as caught:
        driver.create(TYPE, {"ssh": ssh, "toplevel": t1.path, "keys": {name: {"text": "value-value"}}})
    assert "keys" in str(caught.value)


@pytest.mark.parametrize("dest", ["run/keys", "/run/../etc", "/run/keys/", "/run//keys", "/run/./keys", "/",
                                  "/nix/store", "/nix/store/keys", "/run/ke\nys", ""])
def test_bad_dest_dirs_are_refused(driver, t1, dest):
    ssh = {"host": "127.0.0.1", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5vY2xx"}
    with pytest.raises(InvalidInput) as caught:
        driver.create(TYPE, {"ssh": ssh, "toplevel": t1.path, "keys": {"k": {"text": "value-value", "destDir": dest}}})
    assert "keys.k.destDir" in str(caught.value) or "destDir" in str(caught.value)


@pytest.mark.parametrize("entry, field", [
    ({}, "keys.k"),
    ({"text": "a-value", "keyFile": "/etc/hostname"}, "keys.k"),
    ({"text": "a-value", "permissions": "0800"}, "permissions"),
    ({"text": "a-value", "permissions": "rw-------"}, "permissions"),
    ({"text": "a-value", "user": "-rf"}, "user"),
    ({"text": "a-value", "group": "root:root"}, "group"),
    ({"text": "a-value", "uploadAt": "never"}, "uploadAt"),
    ({"text": "a-value", "extra": 1}, "extra"),
])
def test_bad_key_entries_are_refused(driver, t1, entry, field):
    ssh = {"host": "127.0.0.1", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5vY2xx"}
    with pytest.raises(InvalidInput) as caught:
        driver.create(TYPE, {"ssh": ssh, "toplevel": t1.path, "keys": {"k": entry}})
    assert field in str(caught.value)
    assert "a-value" not in str(caught.value), "the text is sensitive: never quoted"


@pytest.mark.parametrize("kind", ["fifo", "directory", "missing"])
def test_key_file_that_is_not_a_regular_file_is_refused(fake_nixos_hosts, driver, t1, tmp_path, kind):
    host, = fake_nixos_hosts(1)
    path = tmp_path / "key"
    if kind == "fifo":
        os.mkfifo(path)  # nobody writes: reading it would block forever
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(InvalidInput) as caught:
        driver.create(TYPE, inputs_for(host, t1, {"k": {"keyFile": str(path)}}))
    assert "keys.k.keyFile" in str(caught.value)
    assert host.current_system() is None and not host.has_path(t1.path), "refused before anything was copied"


def test_host_key_mismatch_uploads_nothing(fake_nixos_hosts, driver, t1):
    host, other = fake_nixos_hosts(2)
    value = secret()
    with pytest.raises(AccessDenied):
        driver.create(TYPE, inputs_for(host, t1, {"k": {"text": value}}, ssh={"hostPublicKey": other.host_public_key}))
    assert not os.path.lexists(host.file("/run/keys"))
    assert files_holding(host, value.encode()) == []


# -- the secret stays secret ------------------------------------------------
def test_the_secret_is_nowhere_but_in_its_key_file(fake_nixos_hosts, t1, tmp_path, capfd, monkeypatch):
    host, = fake_nixos_hosts(1)
    text, from_file = secret(), secret()
    source = tmp_path / "from-file"
    source.write_text(from_file)
    keys = {"inline": {"text": text}, "file": {"keyFile": str(source), "uploadAt": "post-activation"}}
    ins = inputs_for(host, t1, keys)

    command_lines: list = []
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):  # every process the provider starts, with its arguments
        def __init__(self, args, *a, **kw):
            command_lines.append(list(args) if not isinstance(args, str) else [args])
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    targets = []
    real_target = deploy._target
    monkeypatch.setattr(deploy, "_target", lambda *a: targets.append(real_target(*a)) or targets[-1])

    with InProcessDriver() as driver:
        out = driver.create(TYPE, ins)
        observed = driver.read(TYPE, ins, out)
        host.run("chmod 0644 /run/keys/inline")
        drifted = driver.read(TYPE, ins, out)
        with pytest.raises(InvalidInput):  # an error about the keys quotes no secret
            driver.create(TYPE, {**ins, "keys": {"inline": {"text": text, "keyFile": str(source)}}})
        driver.update(TYPE, ins, drifted, ins)
    assert observed == out and drifted["keys"]["inline"]["status"] == "changed"

    for value in (text, from_file):
        raw = value.encode()
        assert value not in json.dumps([out, observed, drifted]), "in the outputs"
        assert [line for line in command_lines if any(value in part for part in line)] == [], "in a command line"
        for target in targets:
            assert target.command_lines and not any(value in " ".join(argv) for argv in target.command_lines)
        holding = sorted(files_holding(host, raw))
        assert len(holding) == 1 and holding[0].startswith(str(host.file("/run/keys"))), holding
        assert not any(host.has_path(p) and raw in open(p, "rb").read() for p in t1.closure()
                       if os.path.isfile(p)), "in the toplevel's closure"
    assert any("key-put" in " ".join(line) for line in command_lines), "the recording saw the uploads"
    err = capfd.readouterr().err
    assert "key inline: /run/keys/inline" in err
    assert text not in err and from_file not in err


def test_the_secret_is_not_on_the_subprocess_providers_stderr(fake_nixos_hosts, t1, capfd):
    host, = fake_nixos_hosts(1)
    value = secret()
    driver = SubprocessDriver()
    try:
        ins = inputs_for(host, t1, {"k": {"text": value}})
        out = driver.create(TYPE, ins)
        assert out["keys"]["k"]["status"] == "present"
        with pytest.raises(InvalidInput):
            driver.create(TYPE, {**ins, "keys": {"k": {"text": value, "permissions": "9"}}})
    finally:
        assert driver.close() == 0
    err = capfd.readouterr().err
    assert "uploading 1 pre-activation key" in err
    assert value not in err and value not in json.dumps(out)
    assert content_of(host, "/run/keys/k") == value.encode()


def test_a_tampered_state_cannot_make_an_update_remove_other_files(fake_nixos_hosts, driver, t1):
    host, = fake_nixos_hosts(1)
    host.write_file("/etc/victim", "precious\n")
    inputs = inputs_for(host, t1, {"k": {"text": "a key"}})
    out = driver.create(TYPE, inputs)
    tampered = json.loads(json.dumps(out))
    tampered["keys"]["x"] = {**out["keys"]["k"], "path": "/etc/victim"}
    driver.update(TYPE, inputs, tampered, inputs)
    assert host.file("/etc/victim").read_text() == "precious\n", "only files the provider wrote are removed"
    # A key the provider did write is still removed when it leaves the set.
    driver.update(TYPE, inputs, out, inputs_for(host, t1, {}))
    assert not host.file("/run/keys/k").exists()


def test_file_roots_keep_a_key_file_from_naming_any_deployer_file(fake_nixos_hosts, driver, t1, tmp_path,
                                                                  monkeypatch):
    host, = fake_nixos_hosts(1)
    allowed = tmp_path / "keys"
    allowed.mkdir()
    (allowed / "ok").write_text("fine")
    deployer_key_dir = os.path.dirname(host.ssh_input()["privateKeyFile"])  # the ssh key is such a file too
    monkeypatch.setenv("FEDIVERSITY_PROVIDERS_FILE_ROOTS", f"{allowed}:{deployer_key_dir}")
    with pytest.raises(InvalidInput, match="keys.c.keyFile.*FEDIVERSITY_PROVIDERS_FILE_ROOTS"):
        driver.create(TYPE, inputs_for(host, t1, {"c": {"keyFile": "/etc/shadow", "destDir": "/root"}}))
    assert not host.file("/root/c").exists() and host.current_system() is None, "nothing was copied or sent"
    out = driver.create(TYPE, inputs_for(host, t1, {"c": {"keyFile": str(allowed / "ok")}}))
    assert out["keys"]["c"]["status"] == "present"


def test_a_key_given_as_a_bare_string_is_not_echoed(driver, t1):
    ssh = {"host": "127.0.0.1", "hostPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}
    with pytest.raises(InvalidInput) as caught:
        driver.create(TYPE, {"ssh": ssh, "toplevel": str(t1), "keys": {"a": "SECRETVAL-bare-string"}})
    assert "SECRETVAL" not in str(caught.value) and "keys.a" in str(caught.value)
