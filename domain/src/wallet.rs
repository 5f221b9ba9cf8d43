//! A user's prepaid points: charged with per-charge and maximum-balance limits, debited only as
//! far as the balance goes, and every change recorded as exactly one ledger entry.

use time::OffsetDateTime;

use crate::{Amount, Balance, LedgerEntryId, Price, UserId};

/// The limits of `MAX_CHARGE_AMOUNT` and `MAX_BALANCE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalletLimits {
    pub max_charge: i64,
    pub max_balance: i64,
}

impl Default for WalletLimits {
    fn default() -> Self {
        Self {
            max_charge: 10_000_000,
            max_balance: 1_000_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChargeRefused {
    #[error("the balance would exceed {max_balance}")]
    BalanceLimitExceeded { max_balance: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DebitRefused {
    #[error("balance {balance} is less than {needed}")]
    InsufficientBalance { balance: i64, needed: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerKind {
    Charge,
    Payment,
}

impl LedgerKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "CHARGE",
            Self::Payment => "PAYMENT",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "CHARGE" => Some(Self::Charge),
            "PAYMENT" => Some(Self::Payment),
            _ => None,
        }
    }
}

/// One change of a balance, before it is stored: `amount` is signed (+ charge, − payment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceChange {
    pub kind: LedgerKind,
    pub amount: i64,
    pub balance_after: Balance,
    /// When the change happened: never earlier than the wallet's previous change, so a history
    /// read newest first never goes back in time (instances' clocks may differ a little).
    pub at: OffsetDateTime,
}

/// A stored ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: LedgerEntryId,
    pub kind: LedgerKind,
    pub amount: i64,
    pub balance_after: Balance,
    pub at: OffsetDateTime,
}

/// Whether entries, newest first as a client reads them, chain: each `balance_after` is the
/// previous one's plus its own `amount`, starting from zero, and the newest equals `balance`.
pub fn ledger_is_consistent(newest_first: &[LedgerEntry], balance: Balance) -> bool {
    let mut running = 0i64;
    for entry in newest_first.iter().rev() {
        running += entry.amount;
        if running != entry.balance_after.get() {
            return false;
        }
    }
    running == balance.get()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wallet {
    user: UserId,
    balance: Balance,
    /// The time of the last change (its ledger entry's `at`); `None` for a wallet never changed.
    last_change_at: Option<OffsetDateTime>,
}

impl Wallet {
    /// The wallet of a user never seen: balance zero, no history.
    pub fn empty(user: UserId) -> Self {
        Self::new(user, Balance::ZERO, None)
    }

    /// A wallet as a store holds it.
    pub fn new(user: UserId, balance: Balance, last_change_at: Option<OffsetDateTime>) -> Self {
        Self {
            user,
            balance,
            last_change_at,
        }
    }

    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    pub fn last_change_at(&self) -> Option<OffsetDateTime> {
        self.last_change_at
    }

    /// Adds `amount`, unless the balance would pass `limits.max_balance`. A refusal changes nothing.
    pub fn charge(
        &mut self,
        amount: Amount,
        limits: WalletLimits,
        now: OffsetDateTime,
    ) -> Result<BalanceChange, ChargeRefused> {
        let refused = ChargeRefused::BalanceLimitExceeded {
            max_balance: limits.max_balance,
        };
        let after = self
            .balance
            .checked_add(amount.get())
            .filter(|after| after.get() <= limits.max_balance)
            .ok_or(refused)?;
        Ok(self.apply(LedgerKind::Charge, amount.get(), after, now))
    }

    /// Takes `price` off the balance, unless the balance is short. A refusal changes nothing.
    pub fn debit(
        &mut self,
        price: Price,
        now: OffsetDateTime,
    ) -> Result<BalanceChange, DebitRefused> {
        let refused = DebitRefused::InsufficientBalance {
            balance: self.balance.get(),
            needed: price.get(),
        };
        let after = self.balance.checked_add(-price.get()).ok_or(refused)?;
        Ok(self.apply(LedgerKind::Payment, -price.get(), after, now))
    }

    fn apply(
        &mut self,
        kind: LedgerKind,
        amount: i64,
        after: Balance,
        now: OffsetDateTime,
    ) -> BalanceChange {
        let at = self.last_change_at.map_or(now, |last| last.max(now));
        self.balance = after;
        self.last_change_at = Some(at);
        BalanceChange {
            kind,
            amount,
            balance_after: after,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    fn wallet(balance: i64) -> Wallet {
        Wallet::new(
            UserId::from_uuid(Uuid::from_u128(1)),
            Balance::new(balance).expect("balance"),
            None,
        )
    }

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn amount(value: i64) -> Amount {
        Amount::parse(value, WalletLimits::default().max_charge).expect("amount")
    }

    #[test]
    fn charge_adds_to_the_balance_and_describes_the_entry() {
        let mut w = wallet(45_000);
        let change = w
            .charge(amount(50_000), WalletLimits::default(), NOW)
            .expect("charged");
        assert_eq!(w.balance.get(), 95_000);
        assert_eq!(change.kind, LedgerKind::Charge);
        assert_eq!(change.amount, 50_000);
        assert_eq!(change.balance_after.get(), 95_000);
    }

    #[test]
    fn charge_refuses_to_pass_the_maximum_balance_and_changes_nothing() {
        let limits = WalletLimits {
            max_charge: 100,
            max_balance: 150,
        };
        let mut w = wallet(100);
        assert!(
            w.charge(amount(50), limits, NOW).is_ok(),
            "exactly the maximum is fine"
        );
        assert_eq!(
            w.charge(amount(1), limits, NOW),
            Err(ChargeRefused::BalanceLimitExceeded { max_balance: 150 })
        );
        assert_eq!(w.balance.get(), 150);
    }

    #[test]
    fn debit_never_goes_negative_and_insufficient_balance_changes_nothing() {
        let mut w = wallet(100_000);
        assert_eq!(
            w.debit(Price::from_stored(120_000), NOW),
            Err(DebitRefused::InsufficientBalance {
                balance: 100_000,
                needed: 120_000
            })
        );
        assert_eq!(w.balance.get(), 100_000);
        let change = w
            .debit(Price::from_stored(100_000), NOW)
            .expect("exact balance");
        assert_eq!(change.amount, -100_000);
        assert_eq!(w.balance, Balance::ZERO);
    }

    #[test]
    fn a_change_is_never_dated_before_the_previous_one() {
        let mut w = wallet(0);
        let first = w
            .charge(amount(10), WalletLimits::default(), NOW)
            .expect("charged");
        assert_eq!(first.at, NOW);
        let earlier = NOW - time::Duration::seconds(3);
        let second = w
            .charge(amount(10), WalletLimits::default(), earlier)
            .expect("charged");
        assert_eq!(
            second.at, NOW,
            "a clock behind the last change does not date it back"
        );
        let later = NOW + time::Duration::seconds(3);
        let third = w.debit(Price::from_stored(5), later).expect("debited");
        assert_eq!(third.at, later);
        assert_eq!(w.last_change_at(), Some(later));
    }

    #[test]
    fn ledger_chains_from_zero_to_the_balance() {
        let at = datetime!(2026-12-01 12:00 UTC);
        let entry = |id, kind, amount, after| LedgerEntry {
            id: LedgerEntryId::new(id).expect("id"),
            kind,
            amount,
            balance_after: Balance::new(after).expect("balance"),
            at,
        };
        let entries = vec![
            entry(2, LedgerKind::Payment, -30, 20),
            entry(1, LedgerKind::Charge, 50, 50),
        ];
        assert!(ledger_is_consistent(&entries, Balance::new(20).expect("b")));
        assert!(!ledger_is_consistent(
            &entries,
            Balance::new(21).expect("b")
        ));
        let broken = vec![
            entry(2, LedgerKind::Payment, -30, 25),
            entry(1, LedgerKind::Charge, 50, 50),
        ];
        assert!(!ledger_is_consistent(&broken, Balance::new(25).expect("b")));
    }

    #[test]
    fn ledger_kind_names_round_trip() {
        assert_eq!(LedgerKind::parse("CHARGE"), Some(LedgerKind::Charge));
        assert_eq!(
            LedgerKind::parse(LedgerKind::Payment.as_str()),
            Some(LedgerKind::Payment)
        );
        assert_eq!(LedgerKind::parse("REFUND"), None);
    }
}
