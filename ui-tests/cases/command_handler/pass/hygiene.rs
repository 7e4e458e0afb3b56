//! The generated code names everything by absolute path: a module that
//! shadows the prelude's names still compiles.
#![deny(warnings)]
#![allow(dead_code)]

mod domain {
    use orchestrix::{aggregate, command_handler, event};

    pub struct Result;
    pub struct Option;
    pub struct Vec;
    pub struct Box;
    pub struct Some;
    pub struct Ok;
    pub trait Send {}
    pub trait Sync {}
    pub trait Future {}
    pub trait Default {}
    pub trait Iterator {}
    pub trait Into {}
    pub mod serde {}
    pub mod core {}
    pub mod std {}

    #[event]
    #[derive(Debug, PartialEq)]
    pub enum CounterEvent {
        Incremented { by: u32 },
        Wrapped(Step),
        Reset,
    }

    #[derive(Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
    pub struct Step {
        pub by: u32,
    }

    #[event(version = 1)]
    #[derive(Debug)]
    pub struct Audited {
        pub by: ::std::string::String,
    }

    #[derive(Debug, ::thiserror::Error)]
    #[error("overflow")]
    pub struct Overflow;

    #[aggregate(event = CounterEvent, error = Overflow, id = u64, snapshot_every = 10)]
    #[derive(Debug, ::core::default::Default, ::serde::Serialize, ::serde::Deserialize)]
    pub struct Counter {
        pub value: u32,
    }

    impl Counter {
        fn apply(&mut self, event: &CounterEvent) {
            match event {
                CounterEvent::Incremented { by } | CounterEvent::Wrapped(Step { by }) => self.value += by,
                CounterEvent::Reset => self.value = 0,
            }
        }
    }

    pub struct Increment(pub u32);
    pub struct Reset;
    pub struct Check;
    pub struct Service;

    #[command_handler]
    impl Counter {
        fn increment(&self, cmd: Increment) -> ::core::result::Result<CounterEvent, Overflow> {
            ::core::result::Result::Ok(CounterEvent::Incremented { by: cmd.0 })
        }

        async fn reset(&self, _: Reset, _: &Service) -> ::core::result::Result<::std::vec::Vec<CounterEvent>, Overflow> {
            ::core::result::Result::Ok(::std::vec![CounterEvent::Reset])
        }

        fn check(&self, _: Check) -> ::core::result::Result<::core::option::Option<CounterEvent>, Overflow> {
            ::core::result::Result::Ok(::core::option::Option::None)
        }
    }

    pub struct Standalone;

    #[command_handler]
    async fn standalone(_: Standalone, _: &Service) -> ::core::result::Result<u8, Overflow> {
        ::core::result::Result::Ok(1)
    }
}

fn main() {
    use orchestrix::{Aggregate, AggregateCommand, Event};
    assert_eq!(domain::CounterEvent::type_names(), ["CounterIncremented", "CounterWrapped", "CounterReset"]);
    assert_eq!(<domain::Counter as Aggregate>::NAME, "Counter");
    assert_eq!(<domain::Increment as AggregateCommand>::NAME, "Increment");
}
