//! The bank domain of the Orchestrix quick-start: accounts that open,
//! take deposits and withdrawals, refuse overdrafts and close; transfers
//! between accounts run as a saga that refunds when the credit is refused;
//! and a balance projection for queries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use orchestrix::error::BoxError;
use orchestrix::prelude::*;
use orchestrix::saga::{Saga, Step};
use orchestrix::{envelope::RecordedEvent, Uuid};
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
    /// A deposit the balance cannot hold: it would exceed `u64::MAX` cents.
    #[error("a deposit of {requested} onto a balance of {balance} exceeds the largest balance an account can hold")]
    BalanceOverflow {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
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
    /// Events are facts the handlers checked before recording them, so the
    /// arithmetic here cannot leave `u64`; it saturates rather than wraps
    /// or panics all the same, should an event written by other code
    /// (an import, a legacy version) break the rule.
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => self.balance = self.balance.saturating_add(*amount),
            AccountEvent::Withdrawn { amount, .. } => self.balance = self.balance.saturating_sub(*amount),
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
        // Checked, never `+`: a wrapped balance would turn a huge deposit
        // into a small one and let later withdrawals through.
        if self.balance.checked_add(cmd.amount).is_none() {
            return Err(BankError::BalanceOverflow { balance: self.balance, requested: cmd.amount });
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

/// What happens to a transfer request.
#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum TransferEvent {
    /// Someone asked to move money; the [`TransferSaga`] carries it out.
    Requested {
        /// The account to debit.
        from: Uuid,
        /// The account to credit.
        to: Uuid,
        /// How much, in cents.
        amount: u64,
    },
}

/// A transfer request: the start of a [`TransferSaga`].
#[aggregate(event = TransferEvent, error = BankError)]
#[derive(Debug, Default)]
pub struct Transfer {
    requested: bool,
}

impl Transfer {
    fn apply(&mut self, event: &TransferEvent) {
        let TransferEvent::Requested { .. } = event;
        self.requested = true;
    }
}

/// Asks for money to move from one account to another.
#[derive(Debug, Clone)]
pub struct RequestTransfer {
    /// The account to debit.
    pub from: Uuid,
    /// The account to credit.
    pub to: Uuid,
    /// How much, in cents.
    pub amount: u64,
}

#[command_handler]
impl Transfer {
    fn request(cmd: RequestTransfer) -> Result<TransferEvent, BankError> {
        if cmd.amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        Ok(TransferEvent::Requested { from: cmd.from, to: cmd.to, amount: cmd.amount })
    }
}

/// What a transfer saga carries from step to step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferData {
    /// The account to debit.
    pub from: Uuid,
    /// The account to credit.
    pub to: Uuid,
    /// How much, in cents.
    pub amount: u64,
}

/// Moves money: debit the source, then credit the target. When the credit
/// is refused (the target is closed), the debit is compensated: refunded.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransferSaga;

impl Saga for TransferSaga {
    const NAME: &'static str = "Transfer";
    type Data = TransferData;

    fn start_event_types(&self) -> Vec<String> {
        TransferEvent::type_names().into_iter().map(String::from).collect()
    }

    fn start(&self, event: &RecordedEvent) -> Result<Option<TransferData>, BoxError> {
        let TransferEvent::Requested { from, to, amount } = event.decode()?;
        Ok(Some(TransferData { from, to, amount }))
    }

    fn steps(&self) -> Vec<Step<TransferData>> {
        vec![
            Step::command("debit", |t: &TransferData| {
                (t.from, Withdraw { amount: t.amount, reason: format!("transfer to {}", t.to) })
            })
            .compensate_with(|t: &TransferData| (t.from, Deposit { amount: t.amount })),
            Step::command("credit", |t: &TransferData| (t.to, Deposit { amount: t.amount })),
        ]
    }
}

/// A read model of every account's balance, fed from the log.
///
/// Cloning shares the model: keep one clone to query while the engine
/// runs another. Idempotent: it remembers the last version it applied per
/// account, so redelivered events change nothing.
#[derive(Debug, Clone, Default)]
pub struct Balances {
    accounts: Arc<Mutex<BTreeMap<String, AccountBalance>>>,
}

/// One row of [`Balances`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountBalance {
    /// The owner.
    pub owner: String,
    /// The balance, in cents.
    pub balance: u64,
    /// Whether the account is closed.
    pub closed: bool,
    /// The last stream version applied.
    pub version: u64,
}

impl Balances {
    /// The balance row of an account.
    pub fn get(&self, id: &Uuid) -> Option<AccountBalance> {
        self.rows().get(&id.to_string()).cloned()
    }

    /// Every row, by account id.
    pub fn all(&self) -> BTreeMap<String, AccountBalance> {
        self.rows().clone()
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AccountBalance>> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[projection(name = "balances")]
impl Balances {
    fn on_account(&mut self, event: AccountEvent, record: &RecordedEvent) -> Result<(), std::convert::Infallible> {
        let mut rows = self.rows();
        let row = rows.entry(record.stream.id().to_owned()).or_default();
        if record.stream_version <= row.version {
            return Ok(()); // seen before: at-least-once delivery
        }
        row.version = record.stream_version;
        match event {
            AccountEvent::Opened { owner } => row.owner = owner,
            // The aggregate refused every command that would leave `u64`.
            AccountEvent::Deposited { amount } => row.balance = row.balance.saturating_add(amount),
            AccountEvent::Withdrawn { amount, .. } => row.balance = row.balance.saturating_sub(amount),
            AccountEvent::Closed => row.closed = true,
        }
        Ok(())
    }

    #[reset]
    fn clear(&mut self) {
        self.rows().clear();
    }
}

/// Formats cents as an amount, `1234` as `12.34`; takes any unsigned
/// amount up to `u128`, so that a sum of balances fits too.
pub fn money(cents: impl Into<u128>) -> String {
    let cents = cents.into();
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

    #[tokio::test]
    async fn a_deposit_that_would_overflow_the_balance_is_refused() {
        AggregateFixture::<Account>::given([opened(), AccountEvent::Deposited { amount: 1 }])
            .when(Deposit { amount: u64::MAX })
            .await
            .then_expect_rejection(BankError::BalanceOverflow { balance: 1, requested: u64::MAX });
        // Up to the largest balance is fine.
        AggregateFixture::<Account>::given([opened(), AccountEvent::Deposited { amount: 1 }])
            .when(Deposit { amount: u64::MAX - 1 })
            .await
            .then_expect_events([AccountEvent::Deposited { amount: u64::MAX - 1 }]);
    }

    #[tokio::test]
    async fn after_a_refused_overflow_the_balance_still_guards_withdrawals() {
        let app = Orchestrix::builder().in_memory().aggregate::<Account>().build().unwrap();
        let id = Uuid::now_v7();
        app.execute(id, OpenAccount { owner: "Ada".into() }).await.unwrap();
        app.execute(id, Deposit { amount: 1 }).await.unwrap();
        let refused = app.execute(id, Deposit { amount: u64::MAX }).await;
        assert!(matches!(refused, Err(CommandError::Rejected(BankError::BalanceOverflow { .. }))), "{refused:?}");
        let overdraft = app.execute(id, Withdraw { amount: 2, reason: "rent".into() }).await;
        assert!(
            matches!(overdraft, Err(CommandError::Rejected(BankError::InsufficientFunds { balance: 1, requested: 2 }))),
            "{overdraft:?}"
        );
        assert_eq!(app.load::<Account>(&id).await.unwrap().state.balance, 1);
    }

    #[test]
    fn applying_recorded_events_never_wraps() {
        let mut account = Account::default();
        account.apply(&AccountEvent::Deposited { amount: u64::MAX });
        account.apply(&AccountEvent::Deposited { amount: 1 });
        assert_eq!(account.balance, u64::MAX);
        account.apply(&AccountEvent::Withdrawn { amount: u64::MAX, reason: String::new() });
        account.apply(&AccountEvent::Withdrawn { amount: 1, reason: String::new() });
        assert_eq!(account.balance, 0);
    }

    #[test]
    fn old_withdrawals_get_a_reason() {
        let v1 = serde_json::value::RawValue::from_string(r#"{"amount":7}"#.into()).unwrap();
        let event = AccountEvent::decode("AccountWithdrawn", 1, &v1).unwrap();
        assert_eq!(event, AccountEvent::Withdrawn { amount: 7, reason: "unspecified".into() });
    }

    #[test]
    fn money_formats_cents() {
        assert_eq!(money(1234_u64), "12.34");
        assert_eq!(money(5_u64), "0.05");
        assert_eq!(money(u128::from(u64::MAX) * 2), "368934881474191032.30");
    }
}
