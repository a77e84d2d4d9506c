"""Mitra presence and availability. PostgreSQL is the truth; Valkey mirrors it for the hot paths
(heartbeats, the availability poll) and every Valkey read falls back to PostgreSQL.

- `state`: online/offline, heartbeats, live sessions (capacity), the stale sweep;
- `availability`: the customers' "is anybody there" read model and pairing's candidate list;
- `mirror`: the Valkey copy kept in step (heartbeat flush, reseed, heal);
- `deactivation`: taking a mitra out of service.
"""
