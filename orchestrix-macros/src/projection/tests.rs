use proc_macro2::TokenStream;
use quote::quote;

use super::model::{self, Model};
use crate::ctxt::Ctxt;

/// Parses and validates without a compiler run: the model, or the messages.
fn parse(args: TokenStream, item: TokenStream) -> Result<Model, Vec<String>> {
    let mut cx = Ctxt::new();
    let model = model::parse(&mut cx, args, syn::parse2(item).unwrap());
    cx.check().map(|()| model).map_err(|error| error.into_iter().map(|e| e.to_string()).collect())
}

#[test]
fn handlers_name_and_reset() {
    let model = parse(
        quote!(),
        quote! {
            impl Totals {
                fn on(&mut self, event: AccountEvent, record: &RecordedEvent) -> Result<(), E> { Ok(()) }
                async fn audit(&mut self, event: Audited) -> Result<(), E> { Ok(()) }
                #[reset]
                fn clear(&mut self) {}
                fn helper(&self) -> u8 { 0 }
            }
        },
    );
    // `helper` is not a handler: a method of the block must handle an event.
    let errors = model.err().unwrap();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("a projection handler takes `&mut self`"), "{errors:#?}");
    assert!(errors[1].starts_with("`helper` takes no event"), "{errors:#?}");
    assert!(errors[2].starts_with("a projection handler returns `Result<(), E>`"), "{errors:#?}");

    let Model::Impl { name, handlers, reset, item, .. } = parse(
        quote!(name = "totals"),
        quote! {
            impl Totals {
                fn on(&mut self, event: AccountEvent, record: &RecordedEvent) -> Result<(), E> { Ok(()) }
                async fn audit(&mut self, event: Audited) -> Result<(), E> { Ok(()) }
                #[reset]
                fn clear(&mut self) {}
            }
        },
    )
    .unwrap() else {
        panic!("an impl block")
    };
    assert_eq!(name, "totals");
    assert_eq!(handlers.len(), 2);
    assert!(handlers[0].with_record && !handlers[0].is_async);
    assert!(!handlers[1].with_record && handlers[1].is_async);
    assert_eq!(reset.unwrap().method, "clear");
    assert!(!quote!(#item).to_string().contains("reset"), "the helper attribute is stripped");
}

#[test]
fn the_default_name_is_the_type_name() {
    let Model::Impl { name, .. } =
        parse(quote!(), quote!(impl Totals { fn on(&mut self, e: E) -> Result<(), X> { Ok(()) } })).unwrap()
    else {
        panic!("an impl block")
    };
    assert_eq!(name, "Totals");
}

#[test]
fn one_input_with_three_mistakes_yields_three_errors() {
    let errors = parse(
        quote!(nmae = "x", name = ""),
        quote! {
            impl Totals {
                fn on(&self, event: &AccountEvent) -> Result<(), E> { Ok(()) }
            }
        },
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(errors[0], "unknown key `nmae`: the valid keys are `name` and `crate`");
    assert!(errors[1].starts_with("a projection name cannot be blank"));
    assert!(errors[2].starts_with("a projection handler takes `&mut self`"));
    assert_eq!(errors[3], "take the event by value: `event: AccountEvent`; the handler owns the decoded event");
}

#[test]
fn duplicate_keys_handlers_and_resets() {
    let errors = parse(
        quote!(name = "a", name = "b"),
        quote! {
            impl Totals {
                fn first(&mut self, e: a::Noted) -> Result<(), E> { Ok(()) }
                fn second(&mut self, e: Noted) -> Result<(), E> { Ok(()) }
                #[reset] fn clear(&mut self) {}
                #[reset] fn wipe(&mut self) {}
            }
        },
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(errors[0], "duplicate key `name`: remove one of them");
    assert!(errors[1].starts_with("events of type `Noted` already go to `first`"));
    assert!(errors[2].starts_with("only one method can be `#[reset]`, and `clear` already is"));
}

#[test]
fn wrong_places_and_shapes() {
    let errors = parse(
        quote!(),
        quote!(
            struct Totals;
        ),
    )
    .err()
    .unwrap();
    assert!(errors[0].starts_with("`#[projection]` goes on an inherent impl block"), "{errors:#?}");
    let errors = parse(
        quote!(),
        quote!(
            impl<T> Tr for Totals<T> {}
        ),
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let errors = parse(quote!(), quote!(impl Totals {})).err().unwrap();
    assert!(errors[0].starts_with("a projection needs at least one method taking an event"), "{errors:#?}");
    let errors = parse(
        quote!(),
        quote! {
            impl Totals {
                fn a(&mut self, e: E) {}
                fn b(&mut self, e: E2) -> u8 { 0 }
                fn c<T>(&mut self, e: E3, r: &R, x: u8) -> Result<(), X> { Ok(()) }
                fn d(&mut self) -> Result<(), X> { Ok(()) }
            }
        },
    )
    .err()
    .unwrap();
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

#[test]
fn expands_on_error_to_the_item_and_a_stub() {
    let output = super::projection(
        quote!(bogus = 1),
        quote!(impl Totals { fn on(&mut self, e: E) -> Result<(), X> { Ok(()) } }),
    )
    .to_string();
    assert!(output.contains("compile_error"));
    assert!(output.contains("impl Totals"));
    assert!(output.contains("Projection for Totals"));
    let output = super::projection(
        quote!(),
        quote!(
            impl<T> Tr for Totals<T> {}
        ),
    )
    .to_string();
    assert!(!output.contains("Projection for"), "no stub for a trait impl: {output}");
}
