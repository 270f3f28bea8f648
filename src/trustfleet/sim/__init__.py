"""The fleet harness: managed processes, a server, agents, a fleet by role, and scenarios.

One harness for ``trustfleet demo``, the tests' kits and the benchmarks (issue 10; model:
python-tuf's ``RepositorySimulator``). ``sim`` sits at the edge and may use every package.
Start at :class:`~trustfleet.sim.fleet.SimFleet` and :mod:`trustfleet.sim.scenarios`.
"""

__all__: list[str] = []
