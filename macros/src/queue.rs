//! `#[derive(Queue)]`: a queue's name, checked against what Redis keys and
//! AMQP queue names can hold.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr};

use crate::signal::snake_case;

/// The impl of `microagent::broker::Queue`.
pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let ident = &input.ident;
    match &input.data {
        Data::Struct(s) if matches!(s.fields, Fields::Named(_)) => {}
        _ => {
            return Err(syn::Error::new(
                ident.span(),
                "a queue's message is a struct with named fields (a JSON object on the wire): `struct Mail { to: String }`",
            ))
        }
    }
    let QueueAttrs {
        name,
        exchange,
        topics,
    } = queue_attrs(input)?;
    let value = name.value();
    if value.is_empty() || value.len() > 255 {
        return Err(syn::Error::new(
            name.span(),
            "a queue name has 1 to 255 characters",
        ));
    }
    if let Some(bad) = value.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(syn::Error::new(
            name.span(),
            format!("a queue name cannot contain {bad:?}"),
        ));
    }
    if let (None, Some(first)) = (&exchange, topics.first()) {
        return Err(syn::Error::new(
            first.span(),
            "topics route through an exchange: add `exchange = \"...\"`",
        ));
    }
    let exchange = match exchange {
        Some(exchange) => quote!(::std::option::Option::Some(#exchange)),
        None => quote!(::std::option::Option::None),
    };
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics ::microagent::broker::Queue for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            const EXCHANGE: ::std::option::Option<&'static str> = #exchange;
            const TOPICS: &'static [&'static str] = &[#(#topics),*];
        }
    })
}

/// What `#[queue(...)]` says.
struct QueueAttrs {
    name: LitStr,
    exchange: Option<LitStr>,
    topics: Vec<LitStr>,
}

/// `#[queue(name = "...", exchange = "...", topics = ["..."])]`; the name
/// defaults to the type's name in snake case.
fn queue_attrs(input: &DeriveInput) -> syn::Result<QueueAttrs> {
    let (mut name, mut exchange, mut topics) = (None, None, Vec::new());
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("queue")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = Some(meta.value()?.parse::<LitStr>()?);
            } else if meta.path.is_ident("exchange") {
                exchange = Some(meta.value()?.parse::<LitStr>()?);
            } else if meta.path.is_ident("topics") {
                let list: syn::ExprArray = meta.value()?.parse()?;
                for topic in list.elems {
                    match topic {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(topic),
                            ..
                        }) => topics.push(topic),
                        other => {
                            return Err(syn::Error::new_spanned(
                                other,
                                "a topic is a string: `topics = [\"user.*\"]`",
                            ))
                        }
                    }
                }
            } else {
                return Err(
                    meta.error("unknown `queue` option; expected `name`, `exchange` or `topics`")
                );
            }
            Ok(())
        })?;
    }
    let name = name
        .unwrap_or_else(|| LitStr::new(&snake_case(&input.ident.to_string()), input.ident.span()));
    Ok(QueueAttrs {
        name,
        exchange,
        topics,
    })
}
