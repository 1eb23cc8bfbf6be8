"""Lawful-interception key export (pcscf_alg.li): records, the Unix-socket sink, configuration."""

from __future__ import annotations

import base64
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from pcscf_alg.config import parse_config
from pcscf_alg.errors import ConfigError
from pcscf_alg.li import KeyRecord, KeySink, UnixDatagramSink, load_sink
from pcscf_alg.mediaplan import SrtpKey

RX = SrtpKey("AES_CM_128_HMAC_SHA1_80", bytes(range(30)), tag=1)
TX = SrtpKey("AES_CM_128_HMAC_SHA1_80", bytes(range(100, 130)), tag=1, mki=b"\x07")


def record() -> KeyRecord:
    return KeyRecord("c1@x", "originating", "t1", "sip:alice@ims.test", 0, RX, TX, 1700000000.5)


def test_record_json_carries_the_keys_and_repr_hides_them() -> None:
    r = record()
    j = r.to_json()
    assert base64.b64decode(j["from_ue"]["key_salt"]) == RX.key_salt
    assert base64.b64decode(j["to_ue"]["key_salt"]) == TX.key_salt
    assert j["to_ue"]["mki"] == "07" and j["from_ue"]["mki"] is None
    assert (j["call_id"], j["leg"], j["dialog"], j["stream"]) == ("c1@x", "originating", "t1", 0)
    text = repr(r) + str(r)
    for k in (RX, TX):
        assert base64.b64encode(k.key_salt).decode() not in text
        assert k.key_salt.hex() not in text
        assert repr(k.key_salt) not in text


def test_unix_sink_delivers_one_json_datagram_per_record(tmp_path: Path) -> None:
    path = str(tmp_path / "li.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as df:
        df.bind(path)
        df.settimeout(2)
        sink = UnixDatagramSink(path)
        assert isinstance(sink, KeySink)
        sink.deliver(record())
        got = json.loads(df.recv(65536))
        sink.close()
    assert got == record().to_json()
    assert (sink.sent, sink.dropped) == (1, 0)


def test_unix_sink_without_agent_drops_counts_and_logs_no_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = UnixDatagramSink(str(tmp_path / "nobody.sock"))
    with caplog.at_level(logging.WARNING, logger="pcscf_alg.li"):
        sink.deliver(record())  # must not raise: the call goes on
    sink.close()
    assert (sink.sent, sink.dropped) == (0, 1)
    assert "c1@x" in caplog.text and "stream 0" in caplog.text
    assert base64.b64encode(RX.key_salt).decode() not in caplog.text


class Capture:
    def __init__(self, label: str = "") -> None:
        self.label = label
        self.records: list[KeyRecord] = []

    def deliver(self, record: KeyRecord) -> None:
        self.records.append(record)


class NotASink:
    pass


def test_load_sink_socket_and_class(tmp_path: Path) -> None:
    assert load_sink(None, "f.yaml") is None
    s = load_sink({"socket": str(tmp_path / "a.sock")}, "f.yaml")
    assert isinstance(s, UnixDatagramSink)
    s.close()
    c = load_sink({"class": f"{__name__}:Capture", "options": {"label": "x"}}, "f.yaml")
    assert isinstance(c, Capture) and c.label == "x"


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ("nope", "li", "must be a mapping"),
        ({}, "li", "exactly one of"),
        ({"socket": "/a", "class": "m:C"}, "li", "exactly one of"),
        ({"socket": "relative.sock"}, "li.socket", "absolute path"),
        ({"socket": "/a", "options": {}}, "li.options", "only with li.class"),
        ({"sockets": "/a"}, "li.sockets", "unknown key"),
        ({"class": "nocolon"}, "li.class", "module:Class"),
        ({"class": "no_such_module_xyz:C"}, "li.class", "cannot import"),
        ({"class": f"{__name__}:Missing"}, "li.class", "has no class"),
        ({"class": f"{__name__}:NotASink"}, "li.class", "does not implement KeySink"),
        ({"class": f"{__name__}:Capture", "options": {"bad": 1}}, "li.options", "Capture"),
        ({"class": f"{__name__}:Capture", "options": [1]}, "li.options", "must be a mapping"),
    ],
)
def test_load_sink_errors_name_file_key_and_reason(section: Any, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_sink(section, "pcscf.yaml")
    assert exc.value.file == "pcscf.yaml"
    assert exc.value.key == key
    assert words in exc.value.reason


def test_config_keeps_the_li_section() -> None:
    base: dict[str, Any] = {
        "sip": {
            "access": {"host": "127.0.0.1", "port": 5060},
            "core": {"host": "127.0.0.1", "port": 5061},
            "next_hop": "sip:127.0.0.1:5070;lr",
        }
    }
    cfg = parse_config({**base, "li": {"socket": "/run/li.sock"}}, "f.yaml")
    assert cfg.li == {"socket": "/run/li.sock"}
    assert parse_config(base, "f.yaml").li is None
    with pytest.raises(ConfigError, match="li: must be a mapping"):
        parse_config({**base, "li": 3}, "f.yaml")
