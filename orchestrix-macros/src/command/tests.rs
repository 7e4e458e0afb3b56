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
                fn open(cmd: Open) -> Result<AccountEvent, E> { loop {} }
                fn many(&self, cmd: a::Many) -> Result<Vec<AccountEvent>, E> { loop {} }
                #[command(requires = any)]
                async fn maybe(&self, cmd: Maybe, svc: &Svc) -> ::core::result::Result<Option<AccountEvent>, E> { loop {} }
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
                fn a(&mut self, cmd: A) -> Result<E, X> { loop {} }
                fn b(&self, cmd: B) -> Vec<E> { loop {} }
                fn c(&self, cmd: B) -> Result<E, X> { loop {} }
                fn d(&self, cmd: B) -> Result<E, X> { loop {} }
            }
        },
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("a command handler takes `&self`"));
    assert!(errors[1].starts_with("this return type is not a `Result`"));
    assert!(errors[2].starts_with("command `B` is already handled by `c`"));
    let Model::Impl { handlers, stubs, .. } = model else { panic!("an impl") };
    assert_eq!(handlers.len(), 1, "only the valid handlers are expanded");
    let stubs: Vec<_> = stubs.iter().map(|s| s.command_name.as_str()).collect();
    assert_eq!(stubs, ["A"], "an invalid handler of a known command gets a stub: sending it is no second error");
}

#[test]
fn standalone_handlers_must_be_async() {
    let (_, errors) = parse(
        quote!(),
        quote!(
            fn transfer(cmd: T) -> Result<R, E> {
                loop {}
            }
        ),
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("standalone command handlers must be `async`"));
    let (model, errors) = parse(
        quote!(crate = "::orx"),
        quote!(
            async fn transfer(cmd: T, app: &App) -> Result<R, E> {
                loop {}
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
                loop {}
            }
        ),
    );
    assert_eq!(errors, ["unknown key `krate`: the valid keys are `crate`"]);
    let (_, errors) = parse(
        quote!(),
        quote!(impl A { #[command(require = new, requires = new, requires = any)] fn f(c: C) -> Result<E, X> { loop {} } }),
    );
    assert_eq!(
        errors,
        ["unknown key `require`: the valid keys are `requires`", "duplicate key `requires`: remove one of them"]
    );
}

#[test]
fn the_id_is_an_optional_parameter_in_any_order() {
    let (model, errors) = parse(
        quote!(),
        quote! {
            impl Account {
                fn open(cmd: Open, id: &Self::Id) -> Result<E, X> { loop {} }
                fn deposit(&self, cmd: Deposit, svc: &Svc, id: &<Self as Aggregate>::Id) -> Result<E, X> { loop {} }
                fn close(&self, cmd: Close, svc: &Svc) -> Result<E, X> { loop {} }
            }
        },
    );
    assert!(errors.is_empty(), "{errors:?}");
    let Model::Impl { handlers, item, .. } = model else { panic!("an impl") };
    let order = |h: &model::Handler| -> Vec<&str> {
        h.extras.iter().map(|e| if matches!(e, model::Extra::Id) { "id" } else { "service" }).collect()
    };
    assert_eq!(order(&handlers[0]), ["id"]);
    assert_eq!(order(&handlers[1]), ["service", "id"]);
    assert_eq!(order(&handlers[2]), ["service"]);
    assert!(handlers[1].service.is_some());
    let emitted = item.to_token_stream().to_string();
    assert!(emitted.contains("id : & < Self as :: orchestrix :: Aggregate > :: Id"), "{emitted}");
}

#[test]
fn misused_ids_are_errors() {
    let (model, errors) = parse(
        quote!(),
        quote! {
            impl Account {
                fn a(cmd: A, id: Self::Id) -> Result<E, X> { loop {} }
                fn b(cmd: B, id: &mut Self::Id) -> Result<E, X> { loop {} }
                fn c(cmd: C, id: &Self::Id, again: &Self::Id) -> Result<E, X> { loop {} }
                fn d(cmd: D, s: &S, t: &T) -> Result<E, X> { loop {} }
            }
        },
    );
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(errors[0], "take the aggregate's id by shared reference: `id: &Self::Id`");
    assert_eq!(errors[1], "take the aggregate's id by shared reference: `id: &Self::Id`");
    assert_eq!(errors[2], "the handler already takes the aggregate's id: remove this parameter");
    assert!(errors[3].starts_with("a command handler takes at most one service"));
    let Model::Impl { stubs, .. } = model else { panic!("an impl") };
    assert_eq!(stubs.len(), 4);
    let (_, errors) = parse(
        quote!(),
        quote!(
            async fn f(cmd: C, id: &Self::Id) -> Result<R, E> {
                loop {}
            }
        ),
    );
    assert!(errors[0].starts_with("a standalone command handler belongs to no aggregate"), "{errors:?}");
}

#[test]
fn a_rejected_standalone_handler_keeps_its_command_and_result_types() {
    let (model, errors) = parse(
        quote!(),
        quote!(
            async fn transfer(cmd: Transfer, rates: Rates) -> Result<u64, TransferError> {
                loop {}
            }
        ),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let Model::Fn { handler: None, stub: Some(stub), .. } = &model else { panic!("a stub") };
    assert_eq!(stub.command.to_token_stream().to_string(), "Transfer");
    let (ok, err) = stub.result.as_ref().expect("the result types");
    assert_eq!(
        (ok.to_token_stream().to_string(), err.to_token_stream().to_string()),
        ("u64".into(), "TransferError".into())
    );
    let expanded = super::expand::expand(&model).to_string();
    assert!(expanded.contains("StandaloneCommand for Transfer"), "{expanded}");
    assert!(expanded.contains("type Output = u64"), "{expanded}");
    assert!(expanded.contains("pending"), "the stub never runs: {expanded}");
}
