-- Where the keyed part of the ledger's chain starts (as ../0007_chain_key.sql).
CREATE TABLE ledger_chain (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    keyed_from BIGINT  NOT NULL CHECK (keyed_from >= 1),
    seal       TEXT    NOT NULL CHECK (length(seal) = 64)
);

CREATE FUNCTION ledger_chain_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the start of the keyed chain is fixed' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER ledger_chain_no_update BEFORE UPDATE ON ledger_chain
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_fixed();
CREATE TRIGGER ledger_chain_no_delete BEFORE DELETE ON ledger_chain
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_fixed();
CREATE TRIGGER ledger_chain_no_truncate BEFORE TRUNCATE ON ledger_chain
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_chain_fixed();
