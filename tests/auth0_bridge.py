"""Test-only bridge to @auth0/mdl, a TypeScript mdoc verifier (interop/auth0-mdl/verify.mjs)."""

from __future__ import annotations

from node_bridge import NodeBridge

AUTH0 = NodeBridge("auth0-mdl", "@auth0/mdl", "verify.mjs")
unavailable = AUTH0.unavailable
call = AUTH0.call
