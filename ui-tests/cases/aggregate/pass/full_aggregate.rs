//! A full aggregate: events with upcasters, sync, async and service
//! handlers, snapshots; checked at runtime.
#![deny(warnings)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use orchestrix::command::CommandSet;
use orchestrix::prelude::*;
use orchestrix::command::Existence;
use serde_json::{json, value::RawValue, Value};

fn withdrawn_v1_to_v2(mut data: Value) -> Result<Value, UpcastError> {
    data["reason"] = json!("unknown");
    Ok(data)
}

fn withdrawn_v2_to_v3(mut data: Value) -> Result<Value, UpcastError> {
    let reason = data["reason"].take();
    data["memo"] = reason;
    Ok(data)
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MoneyDeposited {
    pub amount: u64,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Opened {
        owner: String,
    },
    Deposited(MoneyDeposited),
    #[event(version = 3, upcast = [withdrawn_v1_to_v2, withdrawn_v2_to_v3])]
    Withdrawn {
        amount: u64,
        #[serde(default)]
        memo: String,
    },
    #[event(name = "AccountFrozenByBank")]
    Frozen,
    Renamed {
        #[serde(rename = "newOwner")]
        new_owner: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        note: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BankError {
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("insufficient funds")]
    Insufficient,
}

#[aggregate(event = AccountEvent, error = BankError, snapshot_every = 50, snapshot_version = 2)]
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    owner: String,
    balance: u64,
}

impl Account {
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited(MoneyDeposited { amount }) => self.balance += amount,
            AccountEvent::Withdrawn { amount, .. } => self.balance -= amount,
            AccountEvent::Frozen => {}
            AccountEvent::Renamed { new_owner, .. } => self.owner.clone_from(new_owner),
        }
    }
}

pub struct OpenAccount {
    pub owner: String,
}
pub struct Deposit {
    pub amount: u64,
}
pub struct Withdraw {
    pub amount: u64,
}
pub struct Pay {
    pub amount: u64,
}
pub struct Freeze;

#[derive(Debug)]
pub struct PaymentGateway {
    pub fee: u64,
}

#[command_handler]
impl Account {
    const MINIMUM: u64 = 1;

    fn open(cmd: OpenAccount) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Opened { owner: cmd.owner })
    }

    fn deposit(&self, cmd: Deposit) -> Result<Vec<<Self as Aggregate>::Event>, <Self as Aggregate>::Error> {
        if cmd.amount < Self::MINIMUM {
            return Err(BankError::ZeroAmount);
        }
        Ok(vec![AccountEvent::Deposited(MoneyDeposited { amount: cmd.amount })])
    }

    fn withdraw(&self, Withdraw { amount }: Withdraw) -> Result<Option<AccountEvent>, BankError> {
        if amount == 0 {
            return Ok(None);
        }
        if amount > self.balance {
            return Err(BankError::Insufficient);
        }
        Ok(Some(AccountEvent::Withdrawn { amount, memo: String::new() }))
    }

    async fn pay(&self, cmd: Pay, gateway: &PaymentGateway) -> Result<Vec<AccountEvent>, BankError> {
        let total = cmd.amount + gateway.fee;
        if total > self.balance {
            return Err(BankError::Insufficient);
        }
        Ok(vec![AccountEvent::Withdrawn { amount: total, memo: "payment".into() }])
    }

    #[command(requires = any)]
    fn freeze(&self, _: Freeze) -> Result<AccountEvent, BankError> {
        Ok(AccountEvent::Frozen)
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the handler's future is pending"),
    }
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap()
}

fn main() {
    // Event names, versions and tag-less encoding.
    let names: Vec<_> = AccountEvent::event_types().iter().map(|t| (t.name, t.version)).collect();
    assert_eq!(
        names,
        [
            ("AccountOpened", 1),
            ("AccountDeposited", 1),
            ("AccountWithdrawn", 3),
            ("AccountFrozenByBank", 1),
            ("AccountRenamed", 1)
        ]
    );
    let deposited = AccountEvent::Deposited(MoneyDeposited { amount: 5 });
    assert_eq!(deposited.encode().unwrap().get(), r#"{"amount":5}"#);
    assert_eq!(AccountEvent::Frozen.encode().unwrap().get(), "{}");
    assert_eq!(AccountEvent::Frozen.schema_version(), 1);
    let renamed = AccountEvent::Renamed { new_owner: "Bo".into(), note: None };
    assert_eq!(renamed.encode().unwrap().get(), r#"{"newOwner":"Bo"}"#);
    for event in [
        AccountEvent::Opened { owner: "Ada".into() },
        deposited,
        AccountEvent::Withdrawn { amount: 2, memo: "rent".into() },
        AccountEvent::Frozen,
        renamed,
    ] {
        let data = event.encode().unwrap();
        let back = AccountEvent::decode(event.event_type(), event.schema_version(), &data).unwrap();
        assert_eq!(back, event);
    }
    // Upcasting from v1 and v2, unit variants reading any object.
    let from_v1 = AccountEvent::decode("AccountWithdrawn", 1, &raw(r#"{"amount":3}"#)).unwrap();
    assert_eq!(from_v1, AccountEvent::Withdrawn { amount: 3, memo: "unknown".into() });
    let from_v2 = AccountEvent::decode("AccountWithdrawn", 2, &raw(r#"{"amount":3,"reason":"x"}"#)).unwrap();
    assert_eq!(from_v2, AccountEvent::Withdrawn { amount: 3, memo: "x".into() });
    let frozen = AccountEvent::decode("AccountFrozenByBank", 1, &raw(r#"{"by":"ops"}"#)).unwrap();
    assert_eq!(frozen, AccountEvent::Frozen);
    assert!(matches!(
        AccountEvent::decode("AccountWithdrawn", 4, &raw("{}")),
        Err(orchestrix::error::DecodeErrorKind::NewerThanCode { supported: 3 })
    ));
    assert!(matches!(AccountEvent::decode("Nope", 1, &raw("{}")), Err(orchestrix::error::DecodeErrorKind::UnknownType)));

    // The aggregate.
    assert_eq!(Account::NAME, "Account");
    assert_eq!(Account::SNAPSHOT_EVERY.map(std::num::NonZeroU64::get), Some(50));
    assert_eq!(Account::SNAPSHOT_VERSION, 2);
    let mut account = Account::default();
    Aggregate::apply(&mut account, &AccountEvent::Opened { owner: "Ada".into() });
    Aggregate::apply(&mut account, &AccountEvent::Deposited(MoneyDeposited { amount: 10 }));
    assert_eq!(account.balance, 10);
    let snapshot = account.snapshot_state().unwrap().unwrap();
    assert_eq!(Account::restore_state(&snapshot).unwrap().unwrap(), account);

    // Commands.
    assert_eq!(<OpenAccount as AggregateCommand>::NAME, "OpenAccount");
    assert_eq!(<OpenAccount as AggregateCommand>::REQUIRES, Existence::New);
    assert_eq!(<Deposit as AggregateCommand>::REQUIRES, Existence::Existing);
    assert_eq!(<Freeze as AggregateCommand>::REQUIRES, Existence::Any);
    let names: Vec<_> = Account::commands().iter().map(|c| c.name).collect();
    assert_eq!(names, ["OpenAccount", "Deposit", "Withdraw", "Pay", "Freeze"]);
    let services: Vec<_> = Account::commands().iter().map(|c| c.service.map(|s| s.name)).collect();
    assert!(services[3].unwrap().ends_with("PaymentGateway"), "{services:?}");
    assert!(services[0].is_none());

    let opened = block_on(OpenAccount { owner: "Ada".into() }.handle(None, &Account::default(), &())).unwrap();
    assert_eq!(opened, [AccountEvent::Opened { owner: "Ada".into() }]);
    assert_eq!(block_on(Deposit { amount: 0 }.handle(None, &account, &())), Err(BankError::ZeroAmount));
    assert_eq!(block_on(Withdraw { amount: 0 }.handle(None, &account, &())), Ok(vec![]));
    assert_eq!(block_on(Withdraw { amount: 4 }.handle(None, &account, &())).unwrap().len(), 1);
    let gateway = PaymentGateway { fee: 1 };
    let paid = block_on(Pay { amount: 2 }.handle(None, &account, &gateway)).unwrap();
    assert_eq!(paid, [AccountEvent::Withdrawn { amount: 3, memo: "payment".into() }]);
    assert_eq!(block_on(Pay { amount: 20 }.handle(None, &account, &gateway)), Err(BankError::Insufficient));
}
