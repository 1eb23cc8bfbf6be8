"""Config validation: every error names the file, the key and the reason (issue 2 §6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pcscf_alg.cli import main
from pcscf_alg.config import load_config, parse_config
from pcscf_alg.errors import ConfigError
from pcscf_alg.policy import load_policy

BASE: dict[str, Any] = {
    "sip": {
        "access": {"host": "127.0.0.1", "port": 5060},
        "core": {"host": "127.0.0.1", "port": 5070},
        "next_hop": "sip:127.0.0.1:5080;lr",
    }
}


def with_(path: str, value: Any) -> dict[str, Any]:
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return cfg


def test_embedded_default_is_valid_and_on_loopback() -> None:
    cfg = load_config(None)
    assert cfg.sip.access.host == cfg.sip.core.host == "127.0.0.1"
    assert (cfg.sip.access.port, cfg.sip.core.port) == (5060, 5070)
    assert cfg.sip.next_hop == "sip:127.0.0.1:5080;lr"
    assert cfg.e2ae.rtp and cfg.e2ae.msrp


def test_shipped_config_files_are_valid(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    assert main(["check-config", str(root / "pcscf.yaml")]) == 0
    # the example policies are `policy:` sections to paste into a config
    policies = sorted(root.glob("policy-*.yaml"))
    assert len(policies) >= 3
    for f in policies:
        section = yaml.safe_load(f.read_text())["policy"]
        load_policy(section, str(f))
        merged = tmp_path / f.name
        merged.write_text(yaml.safe_dump({**BASE, "policy": section}))
        assert main(["check-config", str(merged)]) == 0, f


@pytest.mark.parametrize(
    ("path", "value", "key", "reason"),
    [
        ("sip.access.port", 70000, "sip.access.port", "between 1 and 65535"),
        ("sip.access.host", "example.net", "sip.access.host", "IP address"),
        ("sip.next_hop", "http://x", "sip.next_hop", "sip: URI"),
        ("sip.next_hop", "sip:127.0.0.1;transport=sctp", "sip.next_hop", "udp or tcp"),
        ("sip.t1", "fast", "sip.t1", "number"),
        ("sip.egress_networks", ["10.0.0.0/33"], "sip.egress_networks[0]", "not a network"),
        ("sip.bogus", 1, "sip.bogus", "unknown key"),
        ("e2ae.rtp", "yes", "e2ae.rtp", "true or false"),
        ("registration.default_expires", 0, "registration.default_expires", "between"),
        ("log.level", "LOUD", "log.level", "DEBUG, INFO"),
        ("dialogs.idle_timeout_s", 0, "dialogs.idle_timeout_s", "between"),
        ("nonsense", {}, "nonsense", "unknown key"),
    ],
)
def test_errors_name_file_key_and_reason(path: str, value: Any, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(with_(path, value), "my.yaml")
    e = ei.value
    assert e.file == "my.yaml" and e.key == key and reason in e.reason
    assert str(e).startswith(f"my.yaml: {key}: ")


def test_missing_section_and_same_listeners() -> None:
    with pytest.raises(ConfigError, match=r"sip: is required"):
        parse_config({}, "f.yaml")
    cfg = with_("sip.core", {"host": "127.0.0.1", "port": 5060})
    with pytest.raises(ConfigError, match=r"sip\.core: must differ"):
        parse_config(cfg, "f.yaml")


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sip:\n  access: {host: 127.0.0.1, port: 5060\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(bad))
    assert ei.value.file == str(bad) and "line" in ei.value.key


def test_check_config_cli_reports_layer_sections(tmp_path: Path, capsys: Any) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({**BASE, "agw": {"rtp_ports": [30001, 30000]}}))
    assert main(["check-config", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "agw.rtp_ports" in err
    f.write_text(yaml.safe_dump({**BASE, "policy": {"no_such_rule": True}}))
    assert main(["check-config", str(f)]) == 2
    assert "policy." in capsys.readouterr().err
    f.write_text(yaml.safe_dump(BASE))
    assert main(["check-config", str(f)]) == 0
