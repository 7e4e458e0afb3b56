//! The bank domain of the Orchestrix quick-start: accounts that open,
//! take deposits and withdrawals, refuse overdrafts and close.

use orchestrix::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What happens to an account.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    /// The account was opened.
    Opened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    Deposited {
        /// How much, in cents.
        amount: u64,
    },
    /// Money went out. Version 1 had no reason; see [`withdrawn_v1_to_v2`].
    #[event(version = 2, upcast = [withdrawn_v1_to_v2])]
    Withdrawn {
        /// How much, in cents.
        amount: u64,
        /// Why.
        reason: String,
    },
    /// The account was closed.
    Closed,
}

/// Version 1 of `AccountWithdrawn` had no reason: old events read as
/// "unspecified".
pub fn withdrawn_v1_to_v2(mut data: Value) -> Result<Value, UpcastError> {
    let object = data.as_object_mut().ok_or_else(|| UpcastError::new("expected a JSON object"))?;
    object.entry("reason").or_insert_with(|| json!("unspecified"));
    Ok(data)
}

/// Why the bank refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// A withdrawal larger than the balance.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
    /// An amount of zero.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// The account is closed.
    #[error("the account is closed")]
    Closed,
    /// Closing an account that still holds money.
    #[error("the account still holds {0}; withdraw it first")]
    NotEmpty(u64),
}

/// A bank account. Snapshotted every 5 events to show snapshots at work.
#[aggregate(event = AccountEvent, error = BankError, snapshot_every = 5)]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The owner.
    pub owner: String,
    /// The balance, in cents.
    pub balance: u64,
    /// Whether the account was closed.
    pub closed: bool,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount, .. } => self.balance -= amount,
            AccountEvent::Closed => self.closed = true,
        }
    }

    fn ensure_open(&self) -> Result<(), BankError> {
        if self.closed {
            Err(BankError::Closed)
        } else {
            Ok(())
        }
    }
}

/// Opens a new account.
#[derive(Debug, Clone)]
pub struct OpenAccount {
    /// Who owns it.
    pub owner: String,
}

/// Puts money in.
#[derive(Debug, Clone)]
pub struct Deposit {
    /// How much, in cents.
    pub amount: u64,
}

/// Takes money out.
#[derive(Debug, Clone)]
pub struct Withdraw {
    /// How much, in cents.
    pub amount: u64,
    /// Why.
    pub reason: String,
}

/// Closes an empty account.
#[derive(Debug, Clone)]
pub struct CloseAccount;

#[command_handler]
impl Account {
    fn open(cmd: OpenAccount) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Opened { owner: cmd.owner })
    }

    fn deposit(&self, cmd: Deposit) -> Result<AccountEvent, BankError> {
        self.ensure_open()?;
        if cmd.amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        Ok(AccountEvent::Deposited { amount: cmd.amount })
    }

    fn withdraw(&self, cmd: Withdraw) -> Result<AccountEvent, BankError> {
        self.ensure_open()?;
        if cmd.amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        if cmd.amount > self.balance {
            return Err(BankError::InsufficientFunds { balance: self.balance, requested: cmd.amount });
        }
        Ok(AccountEvent::Withdrawn { amount: cmd.amount, reason: cmd.reason })
    }

    fn close(&self, _: CloseAccount) -> Result<Option<AccountEvent>, BankError> {
        if self.closed {
            return Ok(None);
        }
        if self.balance > 0 {
            return Err(BankError::NotEmpty(self.balance));
        }
        Ok(Some(AccountEvent::Closed))
    }
}

/// Formats cents as an amount, `1234` as `12.34`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrix::testing::AggregateFixture;

    fn opened() -> AccountEvent {
        AccountEvent::Opened { owner: "Ada".into() }
    }

    #[tokio::test]
    async fn opening_creates_the_account() {
        AggregateFixture::<Account>::given_no_previous_events()
            .when(OpenAccount { owner: "Ada".into() })
            .await
            .then_expect_events([opened()]);
    }

    #[tokio::test]
    async fn an_overdraft_is_refused() {
        AggregateFixture::<Account>::given([opened(), AccountEvent::Deposited { amount: 50 }])
            .when(Withdraw { amount: 80, reason: "rent".into() })
            .await
            .then_expect_rejection(BankError::InsufficientFunds { balance: 50, requested: 80 });
    }

    #[tokio::test]
    async fn deposits_need_an_existing_open_account() {
        AggregateFixture::<Account>::given_no_previous_events()
            .when(Deposit { amount: 5 })
            .await
            .then_expect_error(|e| matches!(e, CommandError::AggregateNotFound { .. }));
        AggregateFixture::<Account>::given([opened(), AccountEvent::Closed])
            .when(Deposit { amount: 5 })
            .await
            .then_expect_rejection(BankError::Closed);
    }

    #[tokio::test]
    async fn closing_twice_is_a_no_op_and_a_full_account_stays_open() {
        AggregateFixture::<Account>::given([opened(), AccountEvent::Closed])
            .when(CloseAccount)
            .await
            .then_expect_events([]);
        AggregateFixture::<Account>::given([opened(), AccountEvent::Deposited { amount: 1 }])
            .when(CloseAccount)
            .await
            .then_expect_rejection(BankError::NotEmpty(1));
    }

    #[test]
    fn old_withdrawals_get_a_reason() {
        let v1 = serde_json::value::RawValue::from_string(r#"{"amount":7}"#.into()).unwrap();
        let event = AccountEvent::decode("AccountWithdrawn", 1, &v1).unwrap();
        assert_eq!(event, AccountEvent::Withdrawn { amount: 7, reason: "unspecified".into() });
    }

    #[test]
    fn money_formats_cents() {
        assert_eq!(money(1234), "12.34");
        assert_eq!(money(5), "0.05");
    }
}
