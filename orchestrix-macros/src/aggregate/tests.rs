use proc_macro2::TokenStream;
use quote::quote;

use super::model::{self, Model};
use crate::ctxt::Ctxt;

fn parse(args: TokenStream, item: TokenStream) -> Result<Model, Vec<String>> {
    let mut cx = Ctxt::new();
    let model = model::parse(&mut cx, args, syn::parse2(item).unwrap());
    cx.check().map(|()| model).map_err(|error| error.into_iter().map(|e| e.to_string()).collect())
}

#[test]
fn defaults() {
    let model = parse(
        quote!(event = E, error = X),
        quote!(
            struct Account;
        ),
    )
    .unwrap();
    assert_eq!(model.name, "Account");
    assert_eq!(model.id.to_string(), ":: orchestrix :: __private :: Uuid");
    assert_eq!(model.snapshot_version, 1);
    assert!(model.snapshot_every.is_none());
    let model = parse(
        quote!(
            event = E,
            error = X,
            id = u64,
            name = "acct",
            snapshot_every = 20,
            snapshot_version = 3,
            crate = "::orx"
        ),
        quote!(
            enum Account {
                A,
            }
        ),
    )
    .unwrap();
    assert_eq!(
        (model.name.as_str(), model.snapshot_every.map(|(_, n)| n), model.snapshot_version),
        ("acct", Some(20), 3)
    );
    assert_eq!(model.krate.to_string(), ":: orx");
}

#[test]
fn missing_types_are_two_errors() {
    let errors = parse(
        quote!(),
        quote!(
            struct Account;
        ),
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("add `event = YourEvent`"));
    assert!(errors[1].contains("add `error = YourError`"));
}

#[test]
fn one_input_with_three_mistakes_yields_three_errors() {
    let errors = parse(
        quote!(event = E, error = X, snapshot_every = 0, evnt = E, error = Y),
        quote!(
            struct A;
        ),
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    // Argument errors as they are parsed, then the values' validation.
    assert!(errors[0].starts_with("unknown key `evnt`: the valid keys are `event`, `error`, `id`, `name`, `snapshot_every`, `snapshot_version` and `crate`"));
    assert_eq!(errors[1], "duplicate key `error`: remove one of them");
    assert!(errors[2].starts_with("`snapshot_every` must be 1 or more"));
}

#[test]
fn unions_are_rejected() {
    let errors = parse(quote!(event = E, error = X), quote!(union U { a: u8 })).err().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("`#[aggregate]` cannot be used on a union"));
}

#[test]
fn expands_snapshots_only_when_asked() {
    let plain = super::aggregate(
        quote!(event = E, error = X),
        quote!(
            struct A;
        ),
    )
    .to_string();
    assert!(!plain.contains("snapshot_state"));
    assert!(plain.contains("new (< A > :: apply"), "the missing-`apply` check: {plain}");
    assert!(plain.contains("CommandSet for A"), "registrable without a handler block: {plain}");
    let generic = super::aggregate(
        quote!(event = E, error = X),
        quote!(
            struct A<T>(T);
        ),
    )
    .to_string();
    assert!(generic.contains("new (< A < T > > :: apply"), "the same check for a generic type: {generic}");
    assert!(generic.contains("A < T > : :: orchestrix :: command :: CommandHandlerBlock"), "{generic}");
    let snap = super::aggregate(
        quote!(event = E, error = X, snapshot_every = 5),
        quote!(
            struct A;
        ),
    )
    .to_string();
    assert!(snap.contains("snapshot_state") && snap.contains("NonZeroU64 :: new (5u64)"), "{snap}");
}
