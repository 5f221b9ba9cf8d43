-- The catalog (concerts, their dates, one row per seat) and the reservations that hold seats.
-- See docs/DATABASE.md for why each constraint and index exists.

CREATE TABLE concerts (
    id         bigserial   PRIMARY KEY,
    title      text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE concert_dates (
    concert_id bigint  NOT NULL REFERENCES concerts (id),
    date       date    NOT NULL,
    price      bigint  NOT NULL CHECK (price >= 0),
    seat_count integer NOT NULL CHECK (seat_count BETWEEN 1 AND 1000),
    PRIMARY KEY (concert_id, date)
);

-- One row per seat of a date, created with the concert. The claim columns say who has the seat:
-- nobody, a hold (reservation, holder, deadline) or a buyer. A hold whose deadline has passed is
-- free: every read and write compares `held_until` with the caller's `now` (lazy expiry).
-- Claim columns are not indexed, so claiming and releasing are HOT updates; fillfactor leaves room.
CREATE TABLE seats (
    concert_id          bigint      NOT NULL,
    date                date        NOT NULL,
    seat_no             integer     NOT NULL CHECK (seat_no BETWEEN 1 AND 1000),
    held_by_reservation bigint,
    held_by_user        uuid,
    held_until          timestamptz,
    sold_to_user        uuid,
    sold_reservation    bigint,
    PRIMARY KEY (concert_id, date, seat_no),
    FOREIGN KEY (concert_id, date) REFERENCES concert_dates (concert_id, date),
    CONSTRAINT seats_hold_all_or_nothing
        CHECK (num_nulls(held_by_reservation, held_by_user, held_until) IN (0, 3)),
    CONSTRAINT seats_sale_all_or_nothing
        CHECK (num_nulls(sold_to_user, sold_reservation) IN (0, 2)),
    CONSTRAINT seats_sold_seat_has_no_hold
        CHECK (sold_to_user IS NULL OR held_by_reservation IS NULL)
) WITH (fillfactor = 80);

CREATE TABLE reservations (
    id         bigserial   PRIMARY KEY,
    user_id    uuid        NOT NULL,
    concert_id bigint      NOT NULL,
    date       date        NOT NULL,
    seat_no    integer     NOT NULL,
    price      bigint      NOT NULL CHECK (price >= 0),
    status     text        NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'EXPIRED', 'CANCELLED')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    FOREIGN KEY (concert_id, date, seat_no) REFERENCES seats (concert_id, date, seat_no)
);

ALTER TABLE seats
    ADD CONSTRAINT seats_held_by_reservation_fkey
        FOREIGN KEY (held_by_reservation) REFERENCES reservations (id),
    ADD CONSTRAINT seats_sold_reservation_fkey
        FOREIGN KEY (sold_reservation) REFERENCES reservations (id),
    ADD CONSTRAINT seats_sold_reservation_key UNIQUE (sold_reservation);

-- A seat is sold once, whatever the application does: at most one CONFIRMED reservation per seat.
CREATE UNIQUE INDEX reservations_seat_sold_once
    ON reservations (concert_id, date, seat_no) WHERE status = 'CONFIRMED';

-- The per-user hold limit counts `status = 'HELD' AND expires_at > now` for one user.
CREATE INDEX reservations_live_holds_by_user
    ON reservations (user_id, expires_at) WHERE status = 'HELD';

-- The sweeper (oldest lapsed holds first) and the `seat_holds_live` gauge.
CREATE INDEX reservations_held_by_expiry
    ON reservations (expires_at) WHERE status = 'HELD';

-- A new hold over a lapsed one finds the lapsed reservation of the same seat to mark it EXPIRED.
CREATE INDEX reservations_held_by_seat
    ON reservations (concert_id, date, seat_no) WHERE status = 'HELD';
