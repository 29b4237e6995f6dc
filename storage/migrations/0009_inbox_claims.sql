-- Webhook mode (bot/claims.py): who an update comes from, and which instance holds it.
-- A sender's updates are handled one at a time, in update_id order, by the instance
-- holding the claim on the earliest unhandled one; a claim lapses at claimed_until (a
-- dead instance), and marking an update handled releases it. NULL sender: the update
-- names nobody and is handled on its own.
ALTER TABLE inbox ADD COLUMN sender INTEGER;
ALTER TABLE inbox ADD COLUMN claimed_by TEXT;
ALTER TABLE inbox ADD COLUMN claimed_until INTEGER;
CREATE INDEX inbox_sender_pending ON inbox (sender, update_id) WHERE handled_at IS NULL;
