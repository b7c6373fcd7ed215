-- The service registry. A row is written when an instance comes, changes or
-- moves to another node's lease, and deleted when it goes; renewals stay in
-- the memory of the node that holds the lease. `registry_nodes` says which
-- nodes are alive (each writes its row every second), so the instances of a
-- node that died go with it. `registry_state.revision` moves with every write,
-- so nodes read the instances again only when something moved.
CREATE TABLE service_instances (
    service       VARCHAR(128) NOT NULL,
    instance_id   VARCHAR(128) NOT NULL,
    address       VARCHAR(255) NOT NULL,
    port          BIGINT NOT NULL,
    meta          TEXT NOT NULL,
    node          VARCHAR(64) NOT NULL,
    registered_at BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    PRIMARY KEY (service, instance_id)
);
CREATE TABLE registry_nodes (
    node        VARCHAR(64) NOT NULL PRIMARY KEY,
    alive_until BIGINT NOT NULL
);
CREATE TABLE registry_state (
    id       BIGINT NOT NULL PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO registry_state (id, revision) VALUES (1, 0);
