ALTER TABLE seats
    DROP CONSTRAINT seats_held_by_reservation_fkey,
    DROP CONSTRAINT seats_sold_reservation_fkey;
DROP TABLE reservations;
DROP TABLE seats;
DROP TABLE concert_dates;
DROP TABLE concerts;
