"""
The HTTP bridge (C{protocol: http} listeners, twisted.web): publish with
C{POST /api/v1/publish}, subscribe with a server-sent-events stream at
C{GET /api/v1/subscribe}, probes, metrics, the admin API and the status
page. L{build_site} makes a listener's factory.
"""

from .site import HTTPContext, HTTPSite, build_site

__all__ = ["HTTPContext", "HTTPSite", "build_site"]
