//! Property tests: random sequences of hold / cancel / lapse / pay / charge, played against the
//! aggregates the way the use cases play them, keep every invariant.

use std::collections::HashMap;

use concert_domain::reservation::HoldLimit;
use concert_domain::wallet::ledger_is_consistent;
use concert_domain::{
    Amount, ConcertId, LedgerEntry, LedgerEntryId, Price, Reservation, ReservationId,
    ReservationStatus, Seat, SeatClaim, SeatCount, SeatNo, UserId, Wallet, WalletLimits,
};
use proptest::prelude::*;
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

const SEATS: i64 = 5;
const USERS: u128 = 3;
const TTL: Duration = Duration::seconds(300);

#[derive(Debug, Clone)]
enum Step {
    Hold { user: u128, seat: i64 },
    Cancel { user: u128, reservation: usize },
    Pay { user: u128, reservation: usize },
    Charge { user: u128, amount: i64 },
    Wait { seconds: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..USERS, 1..=SEATS).prop_map(|(user, seat)| Step::Hold { user, seat }),
        (0..USERS, 0..20usize).prop_map(|(user, reservation)| Step::Cancel { user, reservation }),
        (0..USERS, 0..20usize).prop_map(|(user, reservation)| Step::Pay { user, reservation }),
        (0..USERS, 1..200_000i64).prop_map(|(user, amount)| Step::Charge { user, amount }),
        (1..400i64).prop_map(|seconds| Step::Wait { seconds }),
    ]
}

struct World {
    now: OffsetDateTime,
    seats: Vec<Seat>,
    reservations: Vec<Reservation>,
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

impl World {
    fn new() -> Self {
        let count = SeatCount::parse(SEATS).expect("count");
        Self {
            now: datetime!(2026-12-01 12:00 UTC),
            seats: SeatNo::all(count)
                .map(|no| Seat::available(no, Price::from_stored(50_000)))
                .collect(),
            reservations: Vec::new(),
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

    fn wallet(&mut self, who: UserId) -> &mut Wallet {
        self.wallets
            .entry(who)
            .or_insert_with(|| Wallet::empty(who))
    }

    fn record(&mut self, who: UserId, change: concert_domain::wallet::BalanceChange) {
        let ledger = self.ledgers.entry(who).or_default();
        let id = LedgerEntryId::new(i64::try_from(ledger.len()).expect("small") + 1).expect("id");
        ledger.insert(
            0,
            LedgerEntry {
                id,
                kind: change.kind,
                amount: change.amount,
                balance_after: change.balance_after,
                at: self.now,
            },
        );
    }

    fn apply(&mut self, step: &Step) {
        let now = self.now;
        match *step {
            Step::Wait { seconds } => self.now += Duration::seconds(seconds),
            Step::Hold { user: n, seat } => {
                let who = user(n);
                let live = self
                    .reservations
                    .iter()
                    .filter(|r| r.user == who && r.status_at(now) == ReservationStatus::Held)
                    .count();
                if self
                    .limit
                    .allows_another(u32::try_from(live).expect("small"))
                    .is_err()
                {
                    return;
                }
                let id =
                    ReservationId::new(i64::try_from(self.reservations.len()).expect("small") + 1)
                        .expect("id");
                let index = usize::try_from(seat - 1).expect("seat");
                let seat = &mut self.seats[index];
                if let Ok(until) = seat.hold(id, who, now, TTL) {
                    self.reservations.push(Reservation {
                        id,
                        user: who,
                        concert_id: ConcertId::new(1).expect("id"),
                        date: date!(2026 - 12 - 24),
                        seat_no: seat.no,
                        price: seat.price,
                        status: ReservationStatus::Held,
                        expires_at: until,
                    });
                }
            }
            Step::Cancel {
                user: n,
                reservation,
            } => {
                let Some(r) = self.reservations.get_mut(reservation) else {
                    return;
                };
                if r.cancel(user(n), now).is_ok() {
                    let (id, seat_no) = (r.id, r.seat_no);
                    let seat = self
                        .seats
                        .iter_mut()
                        .find(|s| s.no == seat_no)
                        .expect("seat");
                    assert!(seat.release(id), "a cancelled hold held its seat");
                }
            }
            Step::Pay {
                user: n,
                reservation,
            } => {
                let who = user(n);
                let Some(r) = self.reservations.get(reservation).cloned() else {
                    return;
                };
                if r.check_payable(who, now).is_err() {
                    return;
                }
                let mut wallet = *self.wallet(who);
                let Ok(change) = wallet.debit(r.price) else {
                    return;
                };
                let seat = self
                    .seats
                    .iter_mut()
                    .find(|s| s.no == r.seat_no)
                    .expect("seat");
                seat.sell(r.id, now)
                    .expect("a payable reservation holds its seat");
                self.reservations[reservation]
                    .confirm(who, now)
                    .expect("payable");
                *self.wallet(who) = wallet;
                self.record(who, change);
                *self.paid.entry(who).or_default() += r.price.get();
            }
            Step::Charge { user: n, amount } => {
                let who = user(n);
                let amount = Amount::parse(amount, self.limits.max_charge).expect("in range");
                let limits = self.limits;
                if let Ok(change) = self.wallet(who).charge(amount, limits) {
                    self.record(who, change);
                    *self.charged.entry(who).or_default() += amount.get();
                }
            }
        }
    }

    fn check(&self) {
        let now = self.now;
        for seat in &self.seats {
            let confirmed: Vec<_> = self
                .reservations
                .iter()
                .filter(|r| r.seat_no == seat.no && r.status == ReservationStatus::Confirmed)
                .collect();
            assert!(confirmed.len() <= 1, "seat {} sold twice", seat.no.get());
            match seat.claim {
                SeatClaim::Sold { reservation, .. } => {
                    assert_eq!(confirmed.len(), 1);
                    assert_eq!(confirmed[0].id, reservation);
                    assert!(!seat.is_available(now));
                }
                SeatClaim::Held {
                    reservation, until, ..
                } => {
                    assert!(confirmed.is_empty());
                    let r = self
                        .reservations
                        .iter()
                        .find(|r| r.id == reservation)
                        .expect("holder");
                    assert_eq!(r.expires_at, until);
                }
                SeatClaim::Available => assert!(confirmed.is_empty()),
            }
            let live_holds = self
                .reservations
                .iter()
                .filter(|r| r.seat_no == seat.no && r.status_at(now) == ReservationStatus::Held)
                .count();
            assert!(
                live_holds <= 1,
                "seat {} has {live_holds} live holds",
                seat.no.get()
            );
        }
        for n in 0..USERS {
            let who = user(n);
            let live = self
                .reservations
                .iter()
                .filter(|r| r.user == who && r.status_at(now) == ReservationStatus::Held)
                .count();
            assert!(live <= 2, "hold limit passed");
            if let Some(wallet) = self.wallets.get(&who) {
                let balance = wallet.balance.get();
                assert!(balance >= 0 && balance <= self.limits.max_balance);
                let charged = self.charged.get(&who).copied().unwrap_or(0);
                let paid = self.paid.get(&who).copied().unwrap_or(0);
                assert_eq!(charged, balance + paid, "charged = balance + paid");
                let ledger = self.ledgers.get(&who).map_or(&[][..], Vec::as_slice);
                assert!(ledger_is_consistent(ledger, wallet.balance));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_sequences_keep_every_invariant(steps in prop::collection::vec(step(), 1..80)) {
        let mut world = World::new();
        for step in &steps {
            world.apply(step);
            world.check();
        }
    }
}
