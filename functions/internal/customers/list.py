"""Customers, newest first; search by call name, e-mail or phone."""

from typing import Any

import falcon
from marshmallow import fields, validate

from functions._shapes import Customer
from lib.auth.accounts import customer_doc
from lib.customers import search_customers
from lib.endpoint import Auth, Ctx, Endpoint
from lib.pagination import NEWEST, PageQuery


class Query(PageQuery):
    q = fields.String(load_default=None, validate=validate.Length(1, 100))


ENDPOINT = Endpoint(
    method="GET",
    route="/internal/customers",
    auth=Auth.CC_USER,
    permission="customers.read",
    query=Query,
    response=Customer,
)


def handle(req: falcon.Request, ctx: Ctx) -> dict[str, Any]:
    q = ctx.query
    return NEWEST.page(search_customers(ctx.services.db, q["q"], NEWEST.params(q)), q["limit"], customer_doc)
