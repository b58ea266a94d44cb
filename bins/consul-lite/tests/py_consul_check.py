"""py-consul (PyPI 1.8.x) against a running consul-lite agent, unchanged.

Usage: python py_consul_check.py PORT NODE
Run by tests/t90_py_consul.rs, which creates the virtual environment. Exits non-zero on the
first failed check.
"""

import sys
import threading
import time

import consul


def main() -> None:
    port, node = int(sys.argv[1]), sys.argv[2]
    c = consul.Consul(host="127.0.0.1", port=port)
    checks = 0

    def check(condition, what):
        nonlocal checks
        if not condition:
            raise AssertionError(what)
        checks += 1

    # KV: put, get, flags, cas.
    check(c.kv.put("py/a", "1", flags=7) is True, "put")
    index, entry = c.kv.get("py/a")
    check(entry["Value"] == b"1" and entry["Flags"] == 7, f"get: {entry}")
    check(int(index) >= entry["ModifyIndex"], f"index {index} below the entry's {entry}")
    modify = entry["ModifyIndex"]
    check(c.kv.put("py/a", "2", cas=modify + 1000) is False, "stale cas refused")
    check(c.kv.put("py/a", "2", cas=modify) is True, "cas with the right index")
    check(c.kv.put("py/new", "x", cas=0) is True, "cas=0 creates")
    check(c.kv.put("py/new", "y", cas=0) is False, "cas=0 on an existing key")

    # A missing key: None, with an index to block on.
    index, missing = c.kv.get("py/missing")
    check(missing is None and int(index) >= 1, f"missing key: {index} {missing}")

    # recurse and keys.
    c.kv.put("py/tree/x", "x")
    c.kv.put("py/tree/y", "y")
    _, rows = c.kv.get("py/tree", recurse=True)
    check([r["Key"] for r in rows] == ["py/tree/x", "py/tree/y"], f"recurse: {rows}")
    _, keys = c.kv.get("py/", keys=True, separator="/")
    check(keys == ["py/a", "py/new", "py/tree/"], f"keys: {keys}")

    # A blocking get wakes when its key changes, with a higher index.
    index, _ = c.kv.get("py/a")
    result = {}

    def wait():
        result["answer"] = c.kv.get("py/a", index=index, wait="30s")

    waiter = threading.Thread(target=wait)
    started = time.monotonic()
    waiter.start()
    time.sleep(0.3)
    c.kv.put("py/other", "not this one")
    time.sleep(0.3)
    check(waiter.is_alive(), "woken by an unrelated key")
    c.kv.put("py/a", "3")
    waiter.join(timeout=10)
    new_index, entry = result["answer"]
    check(int(new_index) > int(index) and entry["Value"] == b"3", f"blocking get: {new_index} {entry}")
    check(time.monotonic() - started < 5, "blocking get not woken")

    # Sessions: lockdelay (py-consul sends "lockdelay": "Ns"), ttl, info, list, renew.
    session = c.session.create(name="py", lock_delay=2, ttl=15)
    _, info = c.session.info(session)
    check(info["ID"] == session and info["Node"] == node, f"info: {info}")
    check(info["LockDelay"] == 2_000_000_000 and info["TTL"] == "15s", f"info: {info}")
    _, sessions = c.session.list()
    check(any(s["ID"] == session for s in sessions), "list")
    _, on_node = c.session.node(node)
    check(any(s["ID"] == session for s in on_node), "node sessions")
    renewed = c.session.renew(session)
    check(renewed["ID"] == session, f"renew: {renewed}")

    # Locks: acquire, a second session refused, release, destroy, lock-delay.
    other = c.session.create(name="py-other", lock_delay=0)
    check(c.kv.put("py/lock", "me", acquire=session) is True, "acquire")
    _, held = c.kv.get("py/lock")
    check(held["Session"] == session and held["LockIndex"] == 1, f"held: {held}")
    check(c.kv.put("py/lock", "them", acquire=other) is False, "second acquire refused")
    check(c.kv.put("py/lock", "free", release=session) is True, "release")
    _, free = c.kv.get("py/lock")
    check("Session" not in free or free["Session"] is None, f"released: {free}")
    check(c.kv.put("py/lock", "me", acquire=session) is True, "acquire again")
    check(c.session.destroy(session) is True, "destroy")
    _, gone = c.session.info(session)
    check(gone is None, "destroyed session is gone")
    check(c.kv.put("py/lock", "them", acquire=other) is False, "refused inside the lock-delay")
    time.sleep(2.2)
    check(c.kv.put("py/lock", "them", acquire=other) is True, "acquired after the lock-delay")

    # Deletes.
    check(c.kv.delete("py/tree", recurse=True) is True, "delete recurse")
    _, rows = c.kv.get("py/tree", recurse=True)
    check(rows is None, f"deleted tree: {rows}")
    _, entry = c.kv.get("py/new")
    check(c.kv.delete("py/new", cas=entry["ModifyIndex"]) is True, "delete cas")

    # Status, agent, catalog.
    check(c.status.leader() != "", "leader")
    members = c.agent.members()
    check(any(m["Name"] == node and m["Status"] == 1 for m in members), f"members: {members}")
    _, nodes = c.catalog.nodes()
    check(any(n["Node"] == node for n in nodes), f"catalog nodes: {nodes}")
    _, services = c.catalog.services()
    check("consul" in services, f"services: {services}")
    _, health = c.health.service("consul", passing=True)
    check(len(health) == 1 and health[0]["Checks"][0]["CheckID"] == "serfHealth", f"health: {health}")

    # An agent service with a TTL check: critical until the check passes, then in the passing
    # answers; deregistered through the agent.
    registered = c.agent.service.register(
        "py-web", service_id="py-web-1", port=8080, tags=["py"], check=consul.Check.ttl("30s")
    )
    check(registered is True, "agent service register")
    check("py-web-1" in c.agent.services(), f"agent services: {c.agent.services()}")
    check(c.agent.checks()["service:py-web-1"]["Status"] == "critical", f"checks: {c.agent.checks()}")
    health_index, health = c.health.service("py-web", passing=True)
    check(health == [], f"critical TTL check, not passing: {health}")
    catalog_index, services = c.catalog.services()
    check("py-web" in services, f"catalog services: {services}")

    # Blocking queries on health and on the catalog: the passing answer wakes when the check
    # passes; the catalog's service list wakes when a service is added.
    blocked = {}

    def wait_health():
        blocked["health"] = c.health.service("py-web", passing=True, index=health_index, wait="30s")

    def wait_catalog():
        blocked["catalog"] = c.catalog.services(index=catalog_index, wait="30s")

    waiters = [threading.Thread(target=wait_health), threading.Thread(target=wait_catalog)]
    started = time.monotonic()
    for waiter in waiters:
        waiter.start()
    time.sleep(0.3)
    check(all(w.is_alive() for w in waiters), "blocking health/catalog queries returned before any change")
    check(c.agent.check.ttl_pass("service:py-web-1", notes="ok") is True, "ttl pass")
    waiters[0].join(timeout=10)
    new_index, health = blocked["health"]
    check(int(new_index) > int(health_index) and len(health) == 1, f"blocking health: {new_index} {health}")
    c.agent.service.register("py-db", service_id="py-db-1", port=5432)
    waiters[1].join(timeout=10)
    new_index, services = blocked["catalog"]
    check(int(new_index) > int(catalog_index) and "py-db" in services, f"blocking catalog: {new_index} {services}")
    check(time.monotonic() - started < 8, "blocking health/catalog queries not woken")
    check(c.agent.service.deregister("py-db-1") is True, "agent service deregister py-db")
    _, health = c.health.service("py-web", passing=True)
    check(len(health) == 1 and health[0]["Service"]["Port"] == 8080, f"passing: {health}")
    check(c.agent.service.deregister("py-web-1") is True, "agent service deregister")
    _, health = c.health.service("py-web")
    check(health == [], f"deregistered: {health}")

    # Transactions.
    result = c.txn.put([{"KV": {"Verb": "set", "Key": "py/txn", "Value": "dHhu"}}])
    check(result["Errors"] is None and len(result["Results"]) == 1, f"txn: {result}")

    print(f"py-consul {consul.__version__ if hasattr(consul, '__version__') else ''}: {checks} checks passed")


if __name__ == "__main__":
    main()
