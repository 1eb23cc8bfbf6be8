"""Issue 6 deliverable 5, carriers: every offer/answer carrier has its own SIPp scenario pair
through the daemon (reliable 18x + PRACK, UPDATE, re-INVITE hold/resume, late offer, forking),
with SRTP/RTP media peers where the carrier sets up media, and the gateway and the call table
empty afterwards. The scenarios check the SDP they receive (<ereg check_it>)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcscf_alg.sdp.model import Sdp
from tests.e2e.daemon import Daemon
from tests.e2e.sipp_e2ae import (
    SUITE80,
    UeMedia,
    addr,
    all_received,
    assert_released,
    cryptos,
    exchange_srtp,
    media,
    received,
    sdp_of,
    sipp_pair,
    udp_socket,
    wait_traced,
)


def ports(p: UeMedia) -> tuple[str, str]:
    return str(p.rtp.getsockname()[1]), str(p.core_rtp.getsockname()[1])


def key_of(sdp_msg: object) -> str:
    (c,) = cryptos(sdp_of(sdp_msg))
    assert c.suite == SUITE80 and c.key.lifetime is None
    line = media(sdp_of(sdp_msg), "audio").attr("crypto")
    assert line is not None
    return line.split("inline:", 1)[1]


def media_both_ways(
    ue_media: UeMedia, ue_rx_key: str, ue_side_sdp: Sdp, core_side_sdp: Sdp
) -> None:
    """SRTP from the UE (its key K11) and back (the network's key), through the gateway
    addresses of the audio stream in the SDP each side received."""
    exchange_srtp(
        ue=ue_media.rtp,
        ue_tx_key=ue_media.k1,
        ue_rx_key=ue_rx_key,
        suite=SUITE80,
        agw_access=addr(ue_side_sdp, "audio"),
        core=ue_media.core_rtp,
        agw_core=addr(core_side_sdp, "audio"),
    )


def test_reliable_183_and_prack(daemon: Daemon, tmp_path: Path, ue_media: UeMedia) -> None:
    ue_port, core_port = ports(ue_media)
    with sipp_pair(
        daemon,
        tmp_path,
        ue_scenario="ue_e2ae_prack.xml",
        core_scenario="scscf_e2ae_prack.xml",
        ue_keys={"k1": ue_media.k1, "rtp_port": ue_port, "hold": "2000"},
        core_keys={"rtp_port": core_port, "ue_rtp_port": ue_port},
    ) as pair:
        inv = wait_traced(pair.core, received("INVITE"), "INVITE at the core")
        r183 = wait_traced(pair.ue, received(183, "INVITE"), "183 at the UE")
        wait_traced(pair.ue, received(200, "INVITE"), "200 (INVITE) at the UE")
        k12 = key_of(r183)
        assert k12 != ue_media.k1
        media_both_ways(ue_media, k12, sdp_of(r183), sdp_of(inv))
        pair.finish()
    assert_released(daemon)


def test_late_offer_offer_in_200_answer_in_ack(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    ue_port, core_port = ports(ue_media)
    with sipp_pair(
        daemon,
        tmp_path,
        ue_scenario="ue_e2ae_late_offer.xml",
        core_scenario="scscf_e2ae_late_offer.xml",
        ue_keys={"k1": ue_media.k1, "rtp_port": ue_port, "hold": "2000"},
        core_keys={"rtp_port": core_port, "ue_rtp_port": ue_port},
    ) as pair:
        ok = wait_traced(pair.ue, received(200, "INVITE"), "200 (offer) at the UE")
        ack = wait_traced(pair.core, received("ACK"), "ACK (answer) at the core")
        ue_offer = sdp_of(ok)
        assert media(ue_offer, "audio").attrs("3ge2ae") == ["applied"]
        k21 = next(v for v in media(ue_offer, "audio").attrs("crypto") if v.startswith("1 "))
        k21 = k21.split("inline:", 1)[1]
        media_both_ways(ue_media, k21, ue_offer, sdp_of(ack))
        pair.finish()
    assert_released(daemon)


def test_reinvite_hold_and_resume_keeps_keys(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    ue_port, core_port = ports(ue_media)
    with sipp_pair(
        daemon,
        tmp_path,
        ue_scenario="ue_e2ae_reinvite.xml",
        core_scenario="scscf_e2ae_reinvite.xml",
        ue_keys={"k1": ue_media.k1, "rtp_port": ue_port, "hold": "1500"},
        core_keys={"rtp_port": core_port, "ue_rtp_port": ue_port},
    ) as pair:
        inv = wait_traced(pair.core, received("INVITE"), "INVITE at the core")
        ok = wait_traced(pair.ue, received(200, "INVITE"), "200 at the UE")
        k12 = key_of(ok)
        media_both_ways(ue_media, k12, sdp_of(ok), sdp_of(inv))
        # hold then resume: wait for the third 200 (CSeq 4), then media flows again, on the same
        # gateway addresses and keys (the SRTP contexts survive the re-offers)
        wait_traced(
            pair.ue,
            lambda t: not t.sent and t.msg.status == 200 and t.msg.cseq == (4, "INVITE"),
            "200 to the resume re-INVITE",
        )
        oks = all_received(pair.ue, received(200, "INVITE"))
        assert [key_of(m) for m in oks] == [k12] * 3
        assert {addr(sdp_of(m), "audio") for m in oks} == {addr(sdp_of(ok), "audio")}
        media_both_ways(ue_media, k12, sdp_of(ok), sdp_of(inv))
        pair.finish()
    assert_released(daemon)


def test_update_from_the_core_in_the_confirmed_dialog(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    ue_port, core_port = ports(ue_media)
    with sipp_pair(
        daemon,
        tmp_path,
        ue_scenario="ue_e2ae_update.xml",
        core_scenario="scscf_e2ae_update.xml",
        ue_keys={"k1": ue_media.k1, "rtp_port": ue_port, "hold": "2000"},
        core_keys={"rtp_port": core_port, "ue_rtp_port": ue_port},
    ) as pair:
        ok = wait_traced(pair.ue, received(200, "INVITE"), "200 at the UE")
        upd = wait_traced(pair.ue, received("UPDATE"), "UPDATE at the UE")
        uok = wait_traced(pair.core, received(200, "UPDATE"), "200 (UPDATE) at the core")
        k12 = key_of(ok)
        assert media(sdp_of(upd), "audio").attrs("3ge2ae") == ["applied"]
        assert addr(sdp_of(upd), "audio") == addr(sdp_of(ok), "audio")
        media_both_ways(ue_media, k12, sdp_of(upd), sdp_of(uok))
        pair.finish()
    assert_released(daemon)


def test_forking_two_early_dialogs_one_confirmed(
    daemon: Daemon, tmp_path: Path, ue_media: UeMedia
) -> None:
    ue_port, core_port = ports(ue_media)
    fork_a = udp_socket()
    with (
        fork_a,
        sipp_pair(
            daemon,
            tmp_path,
            ue_scenario="ue_e2ae_fork.xml",
            core_scenario="scscf_e2ae_fork.xml",
            ue_keys={"k1": ue_media.k1, "rtp_port": ue_port, "hold": "2000"},
            core_keys={
                "rtp_port_a": str(fork_a.getsockname()[1]),
                "rtp_port": core_port,
                "ue_rtp_port": ue_port,
            },
        ) as pair,
    ):
        inv = wait_traced(pair.core, received("INVITE"), "INVITE at the core")
        ok = wait_traced(pair.ue, received(200, "INVITE"), "200 at the UE")
        early = all_received(pair.ue, received(183, "INVITE"))
        assert len(early) == 2
        tags = [m.headers.get("to") for m in early]
        assert tags[0] != tags[1]
        keys = [key_of(m) for m in early]
        # each early dialog got its own answer rewrite; the confirmed one keeps its key
        assert key_of(ok) == keys[1]
        assert ue_media.k1 not in keys
        st = daemon.stats()
        assert st["dialogs"] == 1, st
        media_both_ways(ue_media, keys[1], sdp_of(ok), sdp_of(inv))
        # the losing fork's media address gets nothing once B is confirmed
        fork_a.settimeout(0.3)
        with pytest.raises(TimeoutError):
            fork_a.recvfrom(2048)
        pair.finish()
    assert_released(daemon)
