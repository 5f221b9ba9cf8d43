ALTER TABLE rooms DROP CONSTRAINT rooms_waiting_idle_has_start;
ALTER TABLE rooms DROP COLUMN waiting_idle_since;
ALTER TABLE rooms DROP COLUMN waiting_idle_seconds;
