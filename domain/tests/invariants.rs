//! Property tests: random sequences of hold / cancel / lapse / sweep / pay / charge, played against
//! the aggregates the way the use cases play them (load, let `booking` decide, write the whole new
//! state on success, write nothing on a refusal), keep every invariant.
//!
//! Instances' clocks may differ a little: a charge or a payment may run at a skewed `now`.

use std::collections::HashMap;

use concert_domain::booking::{self, HoldDenied, HoldTerms};
use concert_domain::wallet::{BalanceChange, ledger_is_consistent};
use concert_domain::{
    Amount, ConcertId, HoldLimit, LedgerEntry, LedgerEntryId, Price, Reservation, ReservationId,
    ReservationStatus, Seat, SeatClaim, SeatCount, SeatNo, UserHolds, UserId, Wallet, WalletLimits,
};
use proptest::prelude::*;
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const SEATS: i64 = 5;
const USERS: u128 = 3;
const TTL: Duration = Duration::seconds(300);
/// How far an instance's clock may be from the true time, in seconds.
const SKEW: i64 = 5;

#[derive(Debug, Clone)]
enum Step {
    Hold {
        user: u128,
        seat: i64,
    },
    Cancel {
        user: u128,
        reservation: usize,
    },
    Pay {
        user: u128,
        reservation: usize,
        skew: i64,
    },
    Charge {
        user: u128,
        amount: i64,
        skew: i64,
    },
    Wait {
        seconds: i64,
    },
    /// The sweeper: every reservation the domain agrees to expire now is written `EXPIRED`.
    Sweep,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..USERS, 1..=SEATS).prop_map(|(user, seat)| Step::Hold { user, seat }),
        1 => (0..USERS, 0..20usize).prop_map(|(user, reservation)| Step::Cancel { user, reservation }),
        2 => (0..USERS, 0..20usize, -SKEW..=SKEW)
            .prop_map(|(user, reservation, skew)| Step::Pay { user, reservation, skew }),
        2 => (0..USERS, 1..200_000i64, -SKEW..=SKEW)
            .prop_map(|(user, amount, skew)| Step::Charge { user, amount, skew }),
        2 => (1..400i64).prop_map(|seconds| Step::Wait { seconds }),
        1 => Just(Step::Sweep),
    ]
}

/// When a reservation stopped being a hold before its deadline (paid or cancelled).
type Ended = HashMap<ReservationId, OffsetDateTime>;

struct World {
    now: OffsetDateTime,
    seats: Vec<Seat>,
    reservations: Vec<Reservation>,
    /// When each reservation was created, and when it stopped being a hold early.
    created: HashMap<ReservationId, OffsetDateTime>,
    ended: Ended,
    wallets: HashMap<UserId, Wallet>,
    ledgers: HashMap<UserId, Vec<LedgerEntry>>,
    charged: HashMap<UserId, i64>,
    paid: HashMap<UserId, i64>,
    limit: HoldLimit,
    limits: WalletLimits,
}

fn user(n: u128) -> UserId {
    UserId::from_uuid(Uuid::from_u128(n + 1))
}

fn skewed(now: OffsetDateTime, skew: i64) -> OffsetDateTime {
    now + Duration::seconds(skew)
}

impl World {
    fn new() -> Self {
        let count = SeatCount::parse(SEATS).expect("count");
        Self {
            now: datetime!(2026-12-01 12:00 UTC),
            seats: SeatNo::all(count)
                .map(|no| Seat::available(no, Price::from_stored(50_000)))
                .collect(),
            reservations: Vec::new(),
            created: HashMap::new(),
            ended: HashMap::new(),
            wallets: HashMap::new(),
            ledgers: HashMap::new(),
            charged: HashMap::new(),
            paid: HashMap::new(),
            limit: HoldLimit::new(2).expect("limit"),
            limits: WalletLimits {
                max_charge: 200_000,
                max_balance: 300_000,
            },
        }
    }

    fn wallet(&self, who: UserId) -> Wallet {
        self.wallets
            .get(&who)
            .copied()
            .unwrap_or_else(|| Wallet::empty(who))
    }

    fn seat_index(&self, no: SeatNo) -> usize {
        self.seats
            .iter()
            .position(|s| s.no() == no)
            .expect("the seat of a reservation exists")
    }

    fn reservation_index(&self, id: ReservationId) -> usize {
        self.reservations
            .iter()
            .position(|r| r.id() == id)
            .expect("reservation exists")
    }

    /// What a store loads for the hold limit: the deadlines of the user's stored-`HELD` holds.
    fn holds_of(&self, who: UserId) -> UserHolds {
        UserHolds::new(
            self.reservations
                .iter()
                .filter(|r| r.user() == who && r.stored_status() == ReservationStatus::Held)
                .map(Reservation::expires_at)
                .collect(),
        )
    }

    fn record(&mut self, who: UserId, change: BalanceChange) {
        let ledger = self.ledgers.entry(who).or_default();
        let id = LedgerEntryId::new(i64::try_from(ledger.len()).expect("small") + 1).expect("id");
        ledger.insert(
            0,
            LedgerEntry {
                id,
                kind: change.kind,
                amount: change.amount,
                balance_after: change.balance_after,
                at: change.at,
            },
        );
    }

    fn apply(&mut self, step: &Step) {
        let now = self.now;
        match *step {
            Step::Wait { seconds } => self.now += Duration::seconds(seconds),
            Step::Hold { user: n, seat } => self.hold(user(n), seat, now),
            Step::Cancel {
                user: n,
                reservation,
            } => self.cancel(user(n), reservation, now),
            Step::Pay {
                user: n,
                reservation,
                skew,
            } => self.pay(user(n), reservation, skewed(now, skew)),
            Step::Charge {
                user: n,
                amount,
                skew,
            } => self.charge(user(n), amount, skewed(now, skew)),
            Step::Sweep => self.sweep(now),
        }
    }

    fn hold(&mut self, who: UserId, seat: i64, now: OffsetDateTime) {
        let holds = self.holds_of(who);
        let index = usize::try_from(seat - 1).expect("seat");
        let id = ReservationId::new(i64::try_from(self.reservations.len()).expect("small") + 1)
            .expect("id");
        let terms = HoldTerms {
            reservation: id,
            holder: who,
            concert_id: ConcertId::new(1).expect("id"),
            date: date!(2026 - 12 - 24),
            limit: self.limit,
            ttl: TTL,
        };
        let mut decided = self.seats[index].clone();
        match booking::hold(&mut decided, &holds, terms, now) {
            Ok(granted) => {
                if let Some(replaced) = granted.replaced {
                    // The store writes the lapsed hold it took over `EXPIRED` in the same step.
                    let at = self.reservation_index(replaced);
                    self.reservations[at]
                        .expire(now)
                        .expect("a replaced hold was stored HELD and has lapsed");
                }
                assert_eq!(granted.reservation.expires_at(), now + TTL);
                self.seats[index] = decided;
                self.created.insert(id, now);
                self.reservations.push(granted.reservation);
            }
            Err(denied) => {
                assert_eq!(decided, self.seats[index], "a refused hold changes no seat");
                if let HoldDenied::LimitReached(_) = denied {
                    assert!(holds.live_at(now) >= self.limit.get());
                }
            }
        }
    }

    fn cancel(&mut self, who: UserId, reservation: usize, now: OffsetDateTime) {
        let Some(found) = self.reservations.get(reservation) else {
            return;
        };
        let mut decided = found.clone();
        let index = self.seat_index(found.seat_no());
        let mut seat = self.seats[index].clone();
        if let Ok(released) = booking::cancel(&mut decided, &mut seat, who, now) {
            assert!(released, "a cancellable hold still held its seat");
            self.ended.insert(decided.id(), now);
            self.reservations[reservation] = decided;
            self.seats[index] = seat;
        } else {
            assert_eq!(&decided, &self.reservations[reservation]);
            assert_eq!(seat, self.seats[index]);
        }
    }

    fn pay(&mut self, who: UserId, reservation: usize, now: OffsetDateTime) {
        let Some(found) = self.reservations.get(reservation) else {
            return;
        };
        let mut decided = found.clone();
        let index = self.seat_index(found.seat_no());
        let mut seat = self.seats[index].clone();
        let mut wallet = self.wallet(who);
        match booking::pay(&mut decided, &mut seat, &mut wallet, who, now) {
            Ok(change) => {
                assert_eq!(change.amount, -decided.price().get());
                assert_eq!(change.balance_after, wallet.balance());
                *self.paid.entry(who).or_default() += decided.price().get();
                self.ended.insert(decided.id(), self.now);
                self.reservations[reservation] = decided;
                self.seats[index] = seat;
                self.wallets.insert(who, wallet);
                self.record(who, change);
            }
            Err(_) => {
                assert_eq!(&decided, &self.reservations[reservation]);
                assert_eq!(seat, self.seats[index]);
                assert_eq!(wallet, self.wallet(who), "a refused payment debits nothing");
            }
        }
    }

    fn charge(&mut self, who: UserId, amount: i64, now: OffsetDateTime) {
        let amount = Amount::parse(amount, self.limits.max_charge).expect("in range");
        let mut wallet = self.wallet(who);
        if let Ok(change) = wallet.charge(amount, self.limits, now) {
            assert_eq!(change.amount, amount.get());
            self.wallets.insert(who, wallet);
            self.record(who, change);
            *self.charged.entry(who).or_default() += amount.get();
        } else {
            assert_eq!(wallet, self.wallet(who), "a refused charge changes nothing");
        }
    }

    fn sweep(&mut self, now: OffsetDateTime) {
        for at in 0..self.reservations.len() {
            let mut decided = self.reservations[at].clone();
            let index = self.seat_index(decided.seat_no());
            let mut seat = self.seats[index].clone();
            let was_live = decided.status_at(now) == ReservationStatus::Held;
            if booking::expire(&mut decided, &mut seat, now).is_ok() {
                assert!(!was_live, "only a lapsed hold is expired");
                self.reservations[at] = decided;
                self.seats[index] = seat;
            }
        }
    }

    fn check(&self) {
        let now = self.now;
        for seat in &self.seats {
            let confirmed: Vec<_> = self
                .reservations
                .iter()
                .filter(|r| {
                    r.seat_no() == seat.no() && r.stored_status() == ReservationStatus::Confirmed
                })
                .collect();
            assert!(confirmed.len() <= 1, "seat {} sold twice", seat.no().get());
            match seat.claim() {
                SeatClaim::Sold { reservation, owner } => {
                    assert_eq!(confirmed.len(), 1);
                    assert_eq!(confirmed[0].id(), reservation);
                    assert_eq!(confirmed[0].user(), owner);
                    assert!(!seat.is_available(now));
                }
                SeatClaim::Held {
                    reservation,
                    holder,
                    until,
                } => {
                    assert!(confirmed.is_empty());
                    let r = &self.reservations[self.reservation_index(reservation)];
                    assert_eq!(r.expires_at(), until);
                    assert_eq!(r.user(), holder);
                    assert_eq!(
                        r.stored_status(),
                        ReservationStatus::Held,
                        "a seat is claimed only by a stored hold"
                    );
                }
                SeatClaim::Available => assert!(confirmed.is_empty()),
            }
            let live_holds = self
                .reservations
                .iter()
                .filter(|r| r.seat_no() == seat.no() && r.status_at(now) == ReservationStatus::Held)
                .count();
            assert!(
                live_holds <= 1,
                "seat {} has {live_holds} live holds",
                seat.no().get()
            );
        }
        for n in 0..USERS {
            let who = user(n);
            self.check_hold_limit(who);
            if let Some(wallet) = self.wallets.get(&who) {
                let balance = wallet.balance().get();
                assert!(balance >= 0 && balance <= self.limits.max_balance);
                let charged = self.charged.get(&who).copied().unwrap_or(0);
                let paid = self.paid.get(&who).copied().unwrap_or(0);
                assert_eq!(charged, balance + paid, "charged = balance + paid");
                let ledger = self.ledgers.get(&who).map_or(&[][..], Vec::as_slice);
                assert!(ledger_is_consistent(ledger, wallet.balance()));
                assert!(
                    ledger.windows(2).all(|pair| pair[0].at >= pair[1].at),
                    "a ledger read newest first never goes forward in time: {ledger:?}"
                );
                assert_eq!(
                    wallet.last_change_at(),
                    ledger.first().map(|entry| entry.at),
                    "the wallet knows its newest entry's time"
                );
            }
        }
    }

    /// At every instant so far, the user had at most `limit` live holds. The count of live holds
    /// only rises when a hold is created, so checking at each creation covers every instant.
    fn check_hold_limit(&self, who: UserId) {
        let mine: Vec<_> = self
            .reservations
            .iter()
            .filter(|r| r.user() == who)
            .map(|r| {
                let start = self.created[&r.id()];
                let end = self
                    .ended
                    .get(&r.id())
                    .map_or(r.expires_at(), |ended| (*ended).min(r.expires_at()));
                (start, end)
            })
            .collect();
        for &(instant, _) in &mine {
            let live = mine
                .iter()
                .filter(|(start, end)| *start <= instant && instant < *end)
                .count();
            assert!(
                live <= usize::try_from(self.limit.get()).expect("small"),
                "{live} live holds at {instant}: hold limit passed"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_sequences_keep_every_invariant(steps in prop::collection::vec(step(), 1..80)) {
        let mut world = World::new();
        for step in &steps {
            world.apply(step);
            world.check();
        }
    }
}

proptest! {
    /// Whatever the draws, the opening gives every pre-queue entry exactly one place.
    #[test]
    fn the_opening_order_is_a_permutation_of_the_arrivals(
        arrivals in 0_usize..300,
        draws in prop::collection::vec(any::<usize>(), 300),
        shuffle in any::<bool>(),
    ) {
        let entries: Vec<usize> = (0..arrivals).collect();
        let mut next = draws.into_iter();
        let mut below = |n: usize| next.next().unwrap_or(0) % n;
        let mut order = concert_domain::queue::opening_order(entries.clone(), shuffle, &mut below);
        if !shuffle {
            prop_assert_eq!(&order, &entries);
        }
        order.sort_unstable();
        prop_assert_eq!(order, entries);
    }
}
