-- Where the keyed part of the ledger's chain starts (ledger.chain_key): transfers from
-- keyed_from on are sealed with HMAC-SHA256 under the key; seal is the key's HMAC of this
-- record (core.ledger.chain_start_seal). One row, written once, by the first process that
-- opens the database with a key; earlier transfers keep their plain SHA-256 chain.
CREATE TABLE ledger_chain (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    keyed_from INTEGER NOT NULL CHECK (keyed_from >= 1),
    seal       TEXT    NOT NULL CHECK (length(seal) = 64)
) STRICT;

CREATE TRIGGER ledger_chain_no_update BEFORE UPDATE ON ledger_chain
BEGIN
    SELECT RAISE(ABORT, 'the start of the keyed chain is fixed');
END;
CREATE TRIGGER ledger_chain_no_delete BEFORE DELETE ON ledger_chain
BEGIN
    SELECT RAISE(ABORT, 'the start of the keyed chain is fixed');
END;
