use proc_macro2::TokenStream;
use quote::quote;

use super::model::{self, enum_prefix, Input, Shape};
use crate::ctxt::Ctxt;

/// Parses and validates without a compiler run: the model, or the messages.
fn parse(args: TokenStream, item: TokenStream) -> Result<model::Model, Vec<String>> {
    let mut cx = Ctxt::new();
    let model = model::parse(&mut cx, args, syn::parse2(item).unwrap());
    cx.check().map(|()| model).map_err(|error| error.into_iter().map(|e| e.to_string()).collect())
}

fn names(model: &model::Model) -> Vec<(String, u32)> {
    match &model.input {
        Input::Enum { variants, .. } => variants.iter().map(|v| (v.stored.name.clone(), v.stored.version)).collect(),
        Input::Struct { stored, .. } => vec![(stored.name.clone(), stored.version)],
        Input::Other(_) => Vec::new(),
    }
}

#[test]
fn default_names_strip_a_trailing_event() {
    assert_eq!(enum_prefix("AccountEvent"), "Account");
    assert_eq!(enum_prefix("AccountEvents"), "Account");
    assert_eq!(enum_prefix("Event"), "");
    assert_eq!(enum_prefix("EventLog"), "EventLog");
    let model = parse(
        quote!(),
        quote!(
            enum AccountEvent {
                Opened {},
                #[event(name = "Shut", version = 2, upcast = [f])]
                Closed,
            }
        ),
    )
    .unwrap();
    assert_eq!(names(&model), [("AccountOpened".to_owned(), 1), ("Shut".to_owned(), 2)]);
    let model = parse(
        quote!(version = 1),
        quote!(
            struct Deposited {
                amount: u64,
            }
        ),
    )
    .unwrap();
    assert_eq!(names(&model), [("Deposited".to_owned(), 1)]);
}

#[test]
fn strips_helper_attributes_and_classifies_shapes() {
    let model = parse(
        quote!(),
        quote!(
            enum E {
                #[event(name = "A")]
                A {
                    #[serde(default)]
                    x: u8,
                },
                B(Inner),
                C,
            }
        ),
    )
    .unwrap();
    let Input::Enum { item, variants } = &model.input else { panic!("an enum") };
    let emitted = quote!(#item).to_string();
    assert!(!emitted.contains("event") && !emitted.contains("serde"), "{emitted}");
    assert!(matches!(&variants[0].shape, Shape::Named(fields) if fields[0].serde.len() == 1));
    assert!(matches!(variants[1].shape, Shape::Newtype(_)));
    assert!(matches!(variants[2].shape, Shape::Unit));
}

#[test]
fn one_input_with_three_mistakes_yields_three_errors() {
    let errors = parse(
        quote!(),
        quote! {
            enum AccountEvent {
                #[event(nmae = "X", version = 0)]
                Opened { owner: String },
                #[event(name = "AccountOpened")]
                Reopened,
            }
        },
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0]
        .starts_with("unknown key `nmae`: the valid keys are `name`, `version`, `upcast`, `crate` and `schema`"));
    assert!(errors[1].starts_with("`version` must be 1 or more"));
    assert!(errors[2].starts_with("event type name `AccountOpened` is already used by variant `Opened`"));
}

#[test]
fn versions_need_exactly_their_upcasters() {
    let errors = parse(
        quote!(version = 3, upcast = [a]),
        quote!(
            struct S {
                x: u8,
            }
        ),
    )
    .err()
    .unwrap();
    assert_eq!(
        errors,
        ["version 3 needs 2 upcasters (from v1 and from v2), found 1: `upcast[i]` converts version i + 1 to i + 2"]
    );
    let errors = parse(
        quote!(version = 2),
        quote!(
            struct S {
                x: u8,
            }
        ),
    )
    .err()
    .unwrap();
    assert!(errors[0].starts_with("version 2 needs 1 upcaster (from v1)"), "{errors:?}");
    assert!(parse(
        quote!(version = 2, upcast = [a::b]),
        quote!(
            struct S {
                x: u8,
            }
        )
    )
    .is_ok());
}

#[test]
fn rejects_generics_tuples_and_bad_names() {
    let errors = parse(
        quote!(),
        quote!(
            enum E<T> {
                A { t: T },
                B(u8, u8),
            }
        ),
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("events cannot be generic"));
    assert!(errors[1].starts_with("variant `B` has 2 unnamed fields (u8, u8)"));
    let errors = parse(
        quote!(name = ""),
        quote!(
            struct S;
        ),
    )
    .err()
    .unwrap();
    assert!(errors[0].starts_with("an event type name cannot be empty"));
    let errors = parse(
        quote!(name = "a\tb", name = "c"),
        quote!(
            struct S;
        ),
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn expands_on_error_to_the_item_and_a_stub() {
    let output = super::event(
        quote!(bogus = 1),
        quote!(
            enum E {
                A {},
            }
        ),
    )
    .to_string();
    assert!(output.contains("compile_error"));
    assert!(output.contains("enum E"));
    assert!(output.contains("Event for E"));
}

#[test]
fn a_struct_event_derives_serde_itself() {
    let errors = parse(
        quote!(),
        quote! {
            #[derive(Debug, serde::Serialize, Deserialize)]
            struct Deposited { amount: u64 }
        },
    )
    .err()
    .unwrap();
    assert_eq!(
        errors,
        [
            "`#[event]` already derives `Serialize` and `Deserialize` for a struct event: remove `Serialize` from this `#[derive]`",
            "`#[event]` already derives `Serialize` and `Deserialize` for a struct event: remove `Deserialize` from this `#[derive]`",
        ]
    );
    // An enum derives nothing itself: its own derives stay the user's.
    assert!(parse(
        quote!(),
        quote!(
            #[derive(serde::Serialize)]
            enum E {
                A {},
            }
        )
    )
    .is_ok());
}
