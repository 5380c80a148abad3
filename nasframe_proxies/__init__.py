"""Zero-cost proxies (Abdelfattah et al., ICLR 2021; Mellor et al., ICML 2021) as a plugin.

Registered through the ``proxies`` entry point like any third-party plugin; the contract is
:class:`nasframe_core.proxy.Proxy`. See ``docs/proxies.md``.
"""
