"""No input reaches ssh as anything but the one value it is.

``nixos_config`` writes an ``ssh_config`` that OpenSSH's own client reads;
``existing_vm`` hands its inputs to paramiko.  A newline in ``ssh.host`` once
started a new directive (``ProxyCommand`` ran a command on the deployer,
``StrictHostKeyChecking no`` turned host-key pinning off).  These tests check
the values the real ``ssh -G`` reads back from what we write, for any text,
and drive the providers against real sshd test hosts with the attacks
themselves, with and without the schema in front.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fediversity_providers import AccessDenied, InvalidInput
from fediversity_providers.core.untrusted import host_name, ssh_config_value, user_name
from fediversity_providers.providers.nixos_config.ssh import Target
from fediversity_providers.testing import InProcessDriver, require_executable

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture(scope="module", autouse=True)
def _ssh_client():
    require_executable("ssh", "the OpenSSH client (Debian package openssh-client)")


def ssh_reads(config: str) -> dict[str, list[str]]:
    """What ``ssh -G`` makes of our generated config, directive by directive."""
    result = subprocess.run(["ssh", "-G", "-F", config, "fediversity-target"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=10)
    assert result.returncode == 0, result.stderr
    seen: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        name, _, value = line.partition(" ")
        seen.setdefault(name, []).append(value)
    return seen


def assert_pinned(seen: dict[str, list[str]], known_hosts: str) -> None:
    assert seen["stricthostkeychecking"] == ["true"]
    assert seen["userknownhostsfile"] == [known_hosts]
    assert seen["globalknownhostsfile"] == ["/dev/null"]
    assert seen["batchmode"] == ["yes"]
    assert seen["passwordauthentication"] == ["no"]
    assert "proxycommand" not in seen and "proxyjump" not in seen and "localcommand" not in seen
    assert seen["permitlocalcommand"] == ["no"]


def numeric_form(host: str) -> str:
    """The host as ssh reads it: lower case, a numeric IPv4 shorthand (``0``, ``127.1``) dotted."""
    try:
        return socket.inet_ntoa(socket.inet_aton(host)) if set(host) <= set("0123456789.") else host.lower()
    except OSError:
        return host.lower()


anything = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
attacks = st.sampled_from([
    "127.0.0.1\n  ProxyCommand sh -c 'touch /tmp/pwned'",
    "127.0.0.1\nStrictHostKeyChecking no",
    "127.0.0.1\r\nUserKnownHostsFile /dev/null",
    'x" ProxyCommand "touch /tmp/pwned',
    "%d/.ssh/x", "-oProxyCommand=touch /tmp/pwned", "127.0.0.1 # comment", "a=b", "[::1]", "::1%eth0",
    "root\u2028ProxyCommand x", "a\tb", "",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=st.one_of(anything, attacks), user=st.one_of(anything, attacks))
def test_host_and_user_are_read_back_as_given_or_refused(host, user):
    try:
        target = Target({"host": host, "user": user, "port": 22, "hostPublicKey": KEY})
    except InvalidInput as error:
        assert error.field in ("ssh.host", "ssh.user")
        assert "nothing was changed" in str(error)
        return
    with target:
        seen = ssh_reads(target.config)
        assert seen["hostname"] == [numeric_form(host)]
        assert seen["user"] == [user]
        assert_pinned(seen, os.path.join(target.dir, "known_hosts"))


@settings(max_examples=150, deadline=None)
@given(name=st.one_of(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
                              min_size=1, max_size=30), attacks.filter(lambda a: "/" not in a and a)))
def test_a_key_file_path_is_read_back_as_given_or_refused(tmp_path_factory, name):
    if name in (".", ".."):
        return
    directory = tmp_path_factory.mktemp("keys")
    path = directory / name
    try:
        path.write_text("not really a key\n")
    except (OSError, UnicodeEncodeError):
        return  # a name this file system cannot hold is no path anyone can give
    try:
        target = Target({"host": "127.0.0.1", "hostPublicKey": KEY, "privateKeyFile": str(path)})
    except InvalidInput as error:
        assert error.field == "ssh.privateKeyFile" and "control character" in str(error)
        return
    with target:
        seen = ssh_reads(target.config)
        # ssh -G prints IdentityFile before expanding %-tokens; ssh expands them when it loads the key.
        assert seen["identityfile"] == [str(path).replace("%", "%%")]
        assert_pinned(seen, os.path.join(target.dir, "known_hosts"))


def test_the_helpers_refuse_what_the_schemas_refuse():
    for good in ("vm1.example.org", "192.0.2.10", "2001:db8::10", "::1", "localhost.", "a"):
        assert host_name(good, field="ssh.host") == good
    for bad in ("", "-oProxyCommand=x", "a b", "[::1]", "::1]", "1:2:3", "a..b", "a_b.org", "x" * 254, "é.org",
                "::1%$(id)", "fe80::1%eth0", "::1%;reboot"):
        with pytest.raises(InvalidInput, match="not a host name"):
            host_name(bad, field="ssh.host")
    for good in ("root", "deploy", "_svc", "a.b-c", "u" * 32):
        assert user_name(good, field="ssh.user") == good
    for bad in ("", "-root", "1abc", "a b", "a\nb", "a:b", "u" * 33, "rööt"):
        with pytest.raises(InvalidInput):
            user_name(bad, field="ssh.user")
    with pytest.raises(InvalidInput, match="control character"):
        ssh_config_value("a\nProxyCommand x", field="f")


MARKER_SCRIPT = "sh -c 'touch {marker}'"


def injected(marker: str) -> list[dict]:
    proxy = MARKER_SCRIPT.format(marker=marker)
    return [
        {"host": f"127.0.0.1\n  ProxyCommand {proxy}"},
        {"host": f"127.0.0.1\r\nProxyCommand {proxy}"},
        {"user": f"root\n  ProxyCommand {proxy}"},
        {"host": f'127.0.0.1" ProxyCommand "{proxy}'},
        {"host": f"-oProxyCommand={proxy}"},
        {"user": "root\n  StrictHostKeyChecking no"},
        {"host": "127.0.0.1\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null"},
    ]


@pytest.mark.parametrize("case", range(7))
def test_nixos_config_injection_runs_nothing_on_the_deployer(fake_nixos_hosts, toplevel_builder, tmp_path, case):
    host, = fake_nixos_hosts(1)
    system = toplevel_builder("one", payloads=1)
    marker = tmp_path / "pwned"
    change = injected(str(marker))[case]
    ssh = {**host.ssh_input(connectTimeout=3), **change}
    with InProcessDriver() as driver:  # the schema in front
        with pytest.raises(InvalidInput) as caught:
            driver.create("nixos_config", {"ssh": ssh, "toplevel": str(system)})
    assert "ssh." in str(caught.value)
    # Behind the schema too: a plugin calling Target with an unchecked value.
    with pytest.raises(InvalidInput) as caught:
        Target(ssh)
    assert caught.value.field in ("ssh.host", "ssh.user") and "nothing was changed" in str(caught.value)
    time.sleep(0.2)
    assert not marker.exists()
    assert host.current_system() is None


@pytest.mark.parametrize("case", range(7))
def test_existing_vm_injection_runs_nothing(ssh_hosts, tmp_path, case):
    from fediversity_providers.core.resource import Context
    from fediversity_providers.providers.existing_vm.session import observe

    host, = ssh_hosts(1)
    marker = tmp_path / "pwned"
    ssh = {**host.ssh_input(connectTimeout=3), **injected(str(marker))[case]}
    with InProcessDriver() as driver:
        with pytest.raises(InvalidInput):
            driver.create("existing_vm", {"ssh": ssh})
    with pytest.raises(InvalidInput) as caught:
        observe({"ssh": ssh}, Context("existing_vm"))
    assert caught.value.field in ("ssh.host", "ssh.user")
    assert not marker.exists()


def test_a_wrong_host_key_is_still_refused_whatever_the_user_says(fake_nixos_hosts, toplevel_builder):
    host, other = fake_nixos_hosts(2)
    system = toplevel_builder("one", payloads=1)
    ssh = host.ssh_input(connectTimeout=3, hostPublicKey=other.host_public_key)
    with InProcessDriver() as driver:
        with pytest.raises(AccessDenied, match="does not match ssh.hostPublicKey"):
            driver.create("nixos_config", {"ssh": ssh, "toplevel": str(system)})
    assert host.current_system() is None


@pytest.mark.parametrize("provider", ["nixos_config", "existing_vm"])
def test_a_fifo_as_private_key_is_refused_at_once(fake_nixos_hosts, toplevel_builder, tmp_path, provider):
    host, = fake_nixos_hosts(1)
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    ssh = host.ssh_input(connectTimeout=3, privateKeyFile=str(fifo))
    inputs = {"ssh": ssh}
    if provider == "nixos_config":
        inputs["toplevel"] = str(toplevel_builder("one", payloads=1))
    started = time.monotonic()
    with InProcessDriver() as driver:
        with pytest.raises(InvalidInput, match="not a regular file .a FIFO.") as caught:
            driver.create(provider, inputs)
    assert "ssh.privateKeyFile" in str(caught.value)
    assert time.monotonic() - started < 5


# -- what a machine answers is not trusted either --------------------------------------------

#: What the machine's PATH holds instead of the real tool (its `sh` is what runs the facts script).
HOSTILE_TOOLS = {
    "floods": ("/usr/local/bin/sh", "#!/bin/dash\nexec yes hostname=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"),
    "escapes": ("/usr/local/bin/uname", "#!/bin/sh\nprintf 'evil\\033]0;owned\\007host\\n'\n"),
    "long": ("/usr/local/bin/uname", "#!/bin/sh\nprintf '%0300d\\n' 0\n"),
}


@pytest.mark.parametrize("how", sorted(HOSTILE_TOOLS))
def test_a_machine_answering_nonsense_facts_is_refused_by_name(ssh_hosts, how):
    from fediversity_providers import ProtocolError

    host, = ssh_hosts(1, own_root=True)
    host.write_file(*HOSTILE_TOOLS[how], mode=0o755)
    started = time.monotonic()
    with InProcessDriver() as driver:
        with pytest.raises(ProtocolError) as caught:
            driver.create("existing_vm", {"ssh": host.ssh_input(connectTimeout=10)})
    message = str(caught.value)
    assert "ssh.host" in message and "\x1b" not in message and "\x07" not in message
    assert {"floods": "more than 65536 bytes", "escapes": "control characters", "long": "too long"}[how] in message
    assert time.monotonic() - started < 10
