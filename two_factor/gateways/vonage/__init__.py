"""Vonage Verify v2: the gateway (``client``), its error answers (``problems``) and its
signed status callbacks (``callbacks``).

Import ``VonageGateway`` from ``.client``: this package stays light so the sandbox can use
``problems`` and ``callbacks`` without loading the SDK's every API package.
"""
