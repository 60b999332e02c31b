"""The inner allocation problem's definition: member formulas, rows, and residuals.

Player j's inner problem (docs/model.md, "Inner problem") for a purchase y and a price
p splits a purchase among its members by the alpha-fair welfare. Every backend (native
numpy, the compiled kernels, Pyomo) and the stacked KKT builder read these modules,
so they cannot disagree on what J, its multiplier or its optimality mean:

* ``members``: each member-level formula once, elementwise over numpy arrays and
  the kernels' scalars (the marginal welfare g_i and its slope, a member's response
  to a multiplier, the surplus peak, the level interval, the closed forms);
* ``rows``: a purchase's set-up (price, bounds, member terms under the priced-out
  rule) and what a row's allocation gives (J, dPhi/dp, its own errors);
* ``residual``: the optimality residual that proves each row, and the evidence the
  certificate reads.
"""

from aggregame.allocation.members import (
    CHECK_HALVINGS,
    CLOSED_FORM_ALPHAS,
    HALVINGS,
    MAX_ITERATIONS,
    counted_members,
    curvature_of,
    evaluate,
    level_interval,
    marginal_of,
    marginal_response,
    marginal_welfare,
    marginal_welfare_and_slope,
    member_response,
    member_terms,
    member_welfare,
    price_coefficient,
    quadratic_level_interval,
    quadratic_marginal_response,
    quadratic_parameters,
    quadratic_peak,
    quadratic_peak_surplus,
    quadratic_response,
    quadratic_response_slope,
    stationarity_step,
    surplus_peak,
    utility_of,
    welfare_weight,
)
from aggregame.allocation.residual import (
    LEVEL_PROBE_RTOL,
    NEAR_CAPACITY_RTOL,
    RESIDUAL_TOL,
    Evidence,
    allocation_evidence,
    maxmin_residual,
    optimality_residual,
    settled_residual,
)
from aggregame.allocation.rows import (
    InnerSetup,
    allocation_error,
    bounds_violation,
    forced_rows,
    inner_setup,
    price_sensitivity,
    purchase_prices,
    welfare_of,
)

__all__ = [
    "CHECK_HALVINGS", "CLOSED_FORM_ALPHAS", "HALVINGS", "LEVEL_PROBE_RTOL",
    "MAX_ITERATIONS", "NEAR_CAPACITY_RTOL", "RESIDUAL_TOL", "Evidence", "InnerSetup",
    "allocation_error", "allocation_evidence", "bounds_violation", "counted_members",
    "curvature_of", "evaluate", "forced_rows", "inner_setup", "level_interval",
    "marginal_of", "marginal_response", "marginal_welfare",
    "marginal_welfare_and_slope", "maxmin_residual", "member_response",
    "member_terms", "member_welfare", "optimality_residual", "price_coefficient",
    "price_sensitivity", "purchase_prices", "quadratic_level_interval",
    "quadratic_marginal_response", "quadratic_parameters", "quadratic_peak",
    "quadratic_peak_surplus", "quadratic_response", "quadratic_response_slope",
    "settled_residual", "stationarity_step", "surplus_peak", "utility_of",
    "welfare_of", "welfare_weight",
]
