"""The adversarial soak harness (bench/soak.py, `make soak`) on tiny numbers: every attacker runs
for a few seconds against a real daemon while legitimate e2ae calls go through, so CI proves the
harness works end to end and the defaults hold against a small attack."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.soak import SoakConfig, markdown, soak


def test_soak_smoke_legit_calls_all_complete_and_fds_return(tmp_path: Path) -> None:
    cfg = SoakConfig(
        seconds=3.0,
        rate=2.0,
        ues=3,
        hold_s=0.5,
        warmup_calls=1,
        post_calls=1,
        settle_s=2.0,
        sip_timeout_s=8.0,
        reregister_s=3.0,
        attacker_ips=2,
        idle_conns=20,
        drip_conns=5,
        tcp_open_rate=50.0,
        flood_rate=30.0,
        spray_pps=300.0,
        msrp_probe_rate=10.0,
        bye_rate=5.0,
        msrp_every_s=1.0,
        # Own ranges, apart from the soak's defaults and the daemon's, so a concurrent
        # `make soak` or e2e test is neither sprayed nor in the way.
        rtp_ports=(17000, 17999),
        msrp_ports=(16500, 16999),
    )
    r = asyncio.run(asyncio.wait_for(soak(cfg, tmp_path, log=lambda _: None), 90))
    table = markdown(r)
    legit = r["legit"]
    # every attacker actually ran (the harness must not pass by attacking nothing)
    at = r["attacker"]
    assert at["idle_tcp"]["opened"] > 0 and at["drip_tcp"]["bytes_sent"] > 0, table
    assert at["register_flood"]["sent"] > 0 and at["rtp_spray"]["sent"] > 0, table
    assert at["bye_guess"]["sent"] > 0, table
    # the goal of issue 11: 100 % of the legitimate calls complete, media both ways
    assert legit["attempted"] >= 4, table
    assert legit["succeeded"] == legit["attempted"], table
    assert legit["msrp_attempted"] >= 2, table  # MSRP over TLS calls are among them
    assert r["post_attack"]["succeeded"] == r["post_attack"]["attempted"] == 1, table
    assert r["media"]["received"] > 0, table
    assert r["media"]["foreign_at_ue"] == r["media"]["foreign_at_core"] == 0, table
    assert at["rtp_spray"]["packets_back"] == 0, table
    # the attacker closed everything: the daemon's descriptors are back to the baseline
    fds = r["daemon"]["fds"]
    assert fds["peak"] > fds["before"], table  # the attack was visible
    assert fds["after"] <= fds["before"], table
    assert r["daemon"]["stats_after"]["dialogs"] == 0, table
    assert r["daemon"]["stats_after"]["agw_ports"] == 0, table
    assert r["daemon_alive_at_end"] and r["daemon_exit_code"] == 0, table
