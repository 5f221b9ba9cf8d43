-- Raw limit of GET /v1/concerts/{concertId}/dates/{date}/seats: the seat list query the catalog
-- repository sends (adapters/postgres/src/catalog.rs, available_seats), nothing else.
-- Variables: :concert, :date.
SELECT seats.seat_no, concert_dates.price, concert_dates.seat_count
FROM seats INNER JOIN concert_dates
  ON concert_dates.concert_id = seats.concert_id AND concert_dates.date = seats.date
WHERE seats.concert_id = :concert AND seats.date = CAST(:date AS date)
  AND seats.sold_to_user IS NULL
  AND (seats.held_until IS NULL OR seats.held_until <= now())
ORDER BY seats.seat_no;
