"""An in-memory MongoDB for the one-machine dev stack, shared by every process on it.

A small TCP server on a loopback address that speaks the MongoDB wire protocol (OP_MSG, and
legacy OP_QUERY for the ``isMaster``/``hello`` handshake) and runs each command against one
in-process ``mongomock.MongoClient``. Workers, the demo and tests connect with the real
driver, ``pymongo.AsyncMongoClient(standin.uri)`` (``mongodb://127.0.0.1:PORT/?directConnection=true``),
and beanie 2 on top, so the product's code path is the one it takes with a real server.

Run it::

    python -m infra.local.mongo_standin --port 27017     # prints "listening on 127.0.0.1:27017"
    python -m infra.local.mongo_standin --port 0         # picks a free port and prints it

or embed it in an event loop::

    async with running() as standin:  # or: standin = await serve() ... await standin.close()
        client = AsyncMongoClient(standin.uri)

It presents itself as a standalone MongoDB 7.0 (wire version 21) with sessions. Commands:
hello/isMaster, ping, buildInfo, endSessions, listDatabases, dropDatabase, create, drop,
listCollections, createIndexes, listIndexes, dropIndexes, insert, update (operator,
replacement and pipeline updates, upsert, multi), delete, findAndModify, find (filter,
projection, sort, skip, limit, batchSize, singleBatch) with getMore/killCursors, count,
distinct and aggregate. Unique indexes (also compound, sparse and partial) are enforced:
a clash is error 11000, which PyMongo raises as ``DuplicateKeyError``. Any other command is
answered ``no such command`` (code 59) and PyMongo raises ``OperationFailure``.

Limits (it is a development tool, never a database):

- Data lives in the server process's memory and is lost when it stops. No persistence,
  no replication, no authentication: it binds only to loopback addresses.
- No transactions (refused with IllegalOperation, as a real standalone refuses them), no
  change streams, no tailable cursors, no ``$text``/geo/hashed/wildcard indexes (only 1/-1
  keys), no collations other than the simple one, no ``arrayFilters``, no views, capped or
  time-series collections, no validators, no ``explain``, no ``let`` variables. Each is
  refused with a clear error (code 238, NotImplemented) rather than silently ignored.
- Query and aggregation semantics are mongomock's: close to MongoDB for everyday filters,
  updates and ``$match``/``$group``/``$sort``/``$project``/``$lookup``, but not every operator
  exists; a missing one comes back as an error naming it. Only the clash on an insert says
  which index and key collided; one from an update or upsert names only the collection.
- Performance: one command at a time, every query is a whole-collection scan (indexes
  only enforce uniqueness, they speed nothing up), mongomock copies every match of a query
  before returning the first, and an insert into a collection with a unique index re-checks
  every document already there. Fine for a dev stack's thousands of documents, not
  millions (figures in bench/README.md).
- ``hint``, ``maxTimeMS``, read/write concerns and read preferences are accepted and
  ignored; ``w: 0`` writes are applied and not answered, as the protocol requires.
"""

from infra.local.mongo_standin.engine import Engine
from infra.local.mongo_standin.server import DEFAULT_HOST, MongoStandIn, running, serve

__all__ = ["DEFAULT_HOST", "Engine", "MongoStandIn", "running", "serve"]
