"""The report package's HTML templates (``report/*.html``), strict: a missing value is an error, not a blank."""

import jinja2

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("simpsons_classifier", "report"), autoescape=True, undefined=jinja2.StrictUndefined
)


def template(name: str) -> jinja2.Template:
    return ENVIRONMENT.get_template(name)
