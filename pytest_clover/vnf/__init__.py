"""The sample VNF ("SDC", from OPNFV Clover) that pytest-clover puts under chaos.

One implementation, four components, selected on the command line::

    python -m pytest_clover.vnf {proxy,lb,server,ids} [--host H] [--port P] [--upstream URL]

``proxy`` (proxy-access-control) and ``lb`` (http-lb) forward traffic to
their upstream; ``server`` (clover-server) generates the content and carries
the fault knobs; ``ids`` (snort-ids) inspects mirrored copies of requests.
Every component answers ``/clover/ready``, ``/clover/control``,
``/clover/stats`` and ``/clover/echo`` and stamps ``x-clover-hops`` on its
responses so a test can see which pods and versions served a request.
"""
