DROP TABLE queue_members;
DROP INDEX reservations_held_by_user;
CREATE INDEX reservations_live_holds_by_user
    ON reservations (user_id, expires_at) WHERE status = 'HELD';
DROP TABLE user_holds;
ALTER TABLE wallets DROP COLUMN version;
ALTER TABLE reservations DROP COLUMN version;
ALTER TABLE seats DROP COLUMN version;
