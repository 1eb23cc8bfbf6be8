"""The TS 33.328 e2ae procedures (7.2.1 originating, 7.3.1 terminating) as pure functions.

Two phases, because the gateway must reserve ports between deciding and rewriting:

1. `plan_offer(sdp, direction, flags, policy, subscriber)` parses the offer (raising `SdpError`
   on bad SDP, or on the NOTE 2a error case when policy says reject), decides per m-line what to
   do (`StreamDecision`) and lists the streams that need a gateway reservation
   (`OfferPlan.requests`, `mediaplan.StreamRequest`).
2. The ALG asks the gateway to reserve those streams (`agw.reserve`), then calls
   `apply_offer(plan, reservations, rng)`: it generates our keys (K21 on the terminating side),
   rewrites the offer (towards the core for ORIGINATING, towards the UE for TERMINATING) and
   returns an `OfferState` that the ALG keeps with the dialog (per early dialog when forking).
3. When the answer comes back: `apply_answer(state, answer, rng)` validates it, generates K12 on
   the originating side, rewrites it towards the offerer and returns the complete
   `mediaplan.MediaPlan` for `agw.configure`.

Keys: `rx_key` unprotects what comes FROM the UE (K11 originating, K22 terminating), `tx_key`
protects what goes TO the UE (K12 originating, K21 terminating). Keys come from the injected
`rng(n) -> n random bytes` (callers pass `secrets.token_bytes`), so tests are deterministic.

Re-offers (re-INVITE, UPDATE, late offers): pass the last `AnswerResult` (or the pending
`OfferState`) as `previous=`. A re-offer towards the UE keeps tag, suite and key K21; a re-offer
from the UE that keeps its key K11 gets the same K12 back. New m-lines get new keys; `rekey=True`
forces fresh keys everywhere (RFC 4568 §7.1.4: a new key means a new crypto context).
A re-offer that would take a stream that is e2ae out of e2ae (no a=3ge2ae:requested from the
UE, SRTP from the core...) goes by policy `e2ae_downgrade`: keep (default; the stream stays e2ae
or, re-offered plain by the UE, anchored plain; the UE's keys never reach the core), reject
(488) or allow (the offer decided on its own). See `plan._downgrade`.

SDP sanitising (7.3.1 last paragraph, docs/e2ae-notes.md §3.2): every `a=3ge2ae` is removed
from every SDP we forward, in both directions; `a=3ge2ae:applied` is added only to e2ae streams
of an offer towards the UE. Nothing is added to answers towards the UE (NOTE 3, example 06).

Addresses: c=/m= of anchored streams move to the reservation's `core` endpoint in an offer or
answer sent towards the core, to its `access` endpoint towards the UE. The session-level c=
(and o=, when it mirrored c=) moves only when every live stream that uses it is anchored;
otherwise anchored streams get a media-level c=. MSRP: CEMA (a=msrp-cema in offer and answer)
runs application-agnostic with a=path untouched; otherwise application-aware, with a=path set to
`msrps://<access>/<sid>;tcp` towards the UE and `msrp://<core>/<sid>;tcp` towards the core
(docs/e2ae-notes.md §5.5). a=setup: towards the UE we offer `passive` and answer `passive` to an
`actpass`/`active` UE, `active` to a `passive` one; towards the core we offer `actpass` and
answer what RFC 4145 gives for the core's offer (docs/e2ae-notes.md §5.3).

Errors: `SdpError` (status 488, a one-line reason fit for `Warning: 399 <host> "<reason>"`,
never containing key material); `GatewayError` if a reservation the plan asked for is missing.

Use `redact_sdp()` before logging any SDP: `a=crypto` lines carry keys in clear.
"""

from __future__ import annotations

from .answer import apply_answer
from .helpers import _previous as _previous  # the call layer re-answers with earlier keys
from .helpers import redact_sdp, strip_indications, untouched
from .offer import apply_offer
from .plan import plan_offer
from .records import (
    NO_E2AE,
    AnswerResult,
    E2aeFlags,
    OfferPlan,
    OfferResult,
    OfferState,
    Previous,
    Rng,
    StreamDecision,
    StreamOffer,
)

__all__ = [
    "NO_E2AE",
    "AnswerResult",
    "E2aeFlags",
    "OfferPlan",
    "OfferResult",
    "OfferState",
    "Previous",
    "Rng",
    "StreamDecision",
    "StreamOffer",
    "apply_answer",
    "apply_offer",
    "plan_offer",
    "redact_sdp",
    "strip_indications",
    "untouched",
]
