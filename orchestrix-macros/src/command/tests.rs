use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use super::attr::Requires;
use super::model::{self, Model, Output};
use crate::ctxt::Ctxt;

fn parse(args: TokenStream, item: TokenStream) -> (Model, Vec<String>) {
    let mut cx = Ctxt::new();
    let model = model::parse(&mut cx, args, syn::parse2(item).unwrap());
    let errors = cx.check().err().map(|e| e.into_iter().map(|e| e.to_string()).collect()).unwrap_or_default();
    (model, errors)
}

#[test]
fn reads_handlers() {
    let (model, errors) = parse(
        quote!(),
        quote! {
            impl Account {
                const X: u8 = 1;
                fn open(cmd: Open) -> Result<AccountEvent, E> { todo!() }
                fn many(&self, cmd: a::Many) -> Result<Vec<AccountEvent>, E> { todo!() }
                #[command(requires = any)]
                async fn maybe(&self, cmd: Maybe, svc: &Svc) -> ::core::result::Result<Option<AccountEvent>, E> { todo!() }
            }
        },
    );
    assert!(errors.is_empty(), "{errors:?}");
    let Model::Impl { handlers, item, .. } = model else { panic!("an impl") };
    assert!(!item.to_token_stream().to_string().contains("command ("));
    let summary: Vec<_> =
        handlers.iter().map(|h| (h.command_name.as_str(), h.requires, h.is_async, h.service.is_some())).collect();
    assert_eq!(
        summary,
        [
            ("Open", Requires::New, false, false),
            ("Many", Requires::Existing, false, false),
            ("Maybe", Requires::Any, true, true)
        ]
    );
    assert!(matches!(handlers[0].output(), Output::One(_)));
    assert!(matches!(handlers[1].output(), Output::Many(_)));
    assert!(matches!(handlers[2].output(), Output::Maybe(_)));
}

#[test]
fn one_input_with_three_mistakes_yields_three_errors() {
    let (model, errors) = parse(
        quote!(),
        quote! {
            impl Account {
                fn a(&mut self, cmd: A) -> Result<E, X> { todo!() }
                fn b(&self, cmd: B) -> Vec<E> { todo!() }
                fn c(&self, cmd: B) -> Result<E, X> { todo!() }
                fn d(&self, cmd: B) -> Result<E, X> { todo!() }
            }
        },
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("a command handler takes `&self`"));
    assert!(errors[1].starts_with("this return type is not a `Result`"));
    assert!(errors[2].starts_with("command `B` is already handled by `c`"));
    let Model::Impl { handlers, .. } = model else { panic!("an impl") };
    assert_eq!(handlers.len(), 1, "only the valid handlers are expanded");
}

#[test]
fn standalone_handlers_must_be_async() {
    let (_, errors) = parse(
        quote!(),
        quote!(
            fn transfer(cmd: T) -> Result<R, E> {
                todo!()
            }
        ),
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("standalone command handlers must be `async`"));
    let (model, errors) = parse(
        quote!(crate = "::orx"),
        quote!(
            async fn transfer(cmd: T, app: &App) -> Result<R, E> {
                todo!()
            }
        ),
    );
    assert!(errors.is_empty(), "{errors:?}");
    let Model::Fn { krate, handler: Some(handler), .. } = model else { panic!("a handler") };
    assert_eq!(krate.to_string(), ":: orx");
    assert_eq!(handler.service.to_token_stream().to_string(), "App");
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    let (_, errors) = parse(
        quote!(krate = "x"),
        quote!(
            async fn f(c: C) -> Result<R, E> {
                todo!()
            }
        ),
    );
    assert_eq!(errors, ["unknown key `krate`: the valid keys are `crate`"]);
    let (_, errors) = parse(
        quote!(),
        quote!(impl A { #[command(require = new, requires = new, requires = any)] fn f(c: C) -> Result<E, X> { todo!() } }),
    );
    assert_eq!(
        errors,
        ["unknown key `require`: the valid keys are `requires`", "duplicate key `requires`: remove one of them"]
    );
}
