"""
The CoAP bridge (RFC 7252): a sans-IO codec (L{codec}), message layer
(L{messages}) and block-wise transfer (L{blockwise}), and the Twisted
datagram protocol and resources that drive them.
"""
