//! Diesel table definitions, written by hand to match `migrations/` (the integration tests run
//! every query against the migrated schema, so a mismatch fails a test).

diesel::table! {
    concerts (id) {
        id -> BigInt,
        title -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    concert_dates (concert_id, date) {
        concert_id -> BigInt,
        date -> Date,
        price -> BigInt,
        seat_count -> Integer,
    }
}

diesel::table! {
    seats (concert_id, date, seat_no) {
        concert_id -> BigInt,
        date -> Date,
        seat_no -> Integer,
        held_by_reservation -> Nullable<BigInt>,
        held_by_user -> Nullable<Uuid>,
        held_until -> Nullable<Timestamptz>,
        sold_to_user -> Nullable<Uuid>,
        sold_reservation -> Nullable<BigInt>,
        version -> BigInt,
    }
}

diesel::table! {
    reservations (id) {
        id -> BigInt,
        user_id -> Uuid,
        concert_id -> BigInt,
        date -> Date,
        seat_no -> Integer,
        price -> BigInt,
        status -> Text,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        version -> BigInt,
    }
}

diesel::table! {
    wallets (user_id) {
        user_id -> Uuid,
        balance -> BigInt,
        updated_at -> Timestamptz,
        version -> BigInt,
    }
}

diesel::table! {
    user_holds (user_id) {
        user_id -> Uuid,
        version -> BigInt,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> BigInt,
        user_id -> Uuid,
        kind -> Text,
        amount -> BigInt,
        balance_after -> BigInt,
        at -> Timestamptz,
    }
}

diesel::table! {
    payments (id) {
        id -> BigInt,
        reservation_id -> BigInt,
        user_id -> Uuid,
        amount -> BigInt,
        ledger_entry_id -> BigInt,
        paid_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (user_id, scope, key) {
        user_id -> Uuid,
        scope -> Text,
        key -> Text,
        request_hash -> Text,
        ledger_entry_id -> BigInt,
        payment_id -> Nullable<BigInt>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    queue_tickets (ticket) {
        ticket -> BigInt,
        user_id -> Uuid,
        status -> Text,
        issued_at -> Timestamptz,
        admitted_at -> Nullable<Timestamptz>,
        active_until -> Nullable<Timestamptz>,
        last_seen -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        end_reason -> Nullable<Text>,
    }
}

diesel::table! {
    queue_state (line) {
        line -> Integer,
        serving -> BigInt,
        admitted_total -> BigInt,
        issued_total -> BigInt,
        issued_hwm -> BigInt,
        ended_waiting_total -> BigInt,
        pace_credit_millis -> BigInt,
        pace_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(idempotency_keys -> ledger_entries (ledger_entry_id));
diesel::joinable!(payments -> ledger_entries (ledger_entry_id));

diesel::allow_tables_to_appear_in_same_query!(
    concerts,
    concert_dates,
    seats,
    reservations,
    wallets,
    ledger_entries,
    payments,
    idempotency_keys,
    queue_tickets,
    queue_state,
);
