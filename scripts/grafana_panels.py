"""Panel and dashboard builders shared by scripts/grafana_dashboards.py (grafana-foundation-sdk).

Every panel reads the Prometheus data source picked in the dashboard's `datasource` variable; query
ids are A, B, C ... in order. Not imported by the engine.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "email-engine"
REFS = "ABCDEFGHIJ"


def q(expr: str, legend: str = "", instant: bool = False, table_format: bool = False) -> Dataquery:
    out = Dataquery().expr(expr).legend_format(legend or "__auto")
    if instant:
        out = out.instant()
    if table_format:
        out = out.format(PromQueryFormat.TABLE)
    return out


def _common(panel: db.Panel | timeseries.Panel | stat.Panel | table.Panel | statetimeline.Panel, title: str,
            description: str, targets: Sequence[Dataquery], w: int, h: int, unit: str | None) -> None:
    if len(targets) > len(REFS):
        raise ValueError(f"{title}: at most {len(REFS)} queries per panel")
    panel.title(title).description(description).datasource(DS).span(w).height(h)
    for ref, target in zip(REFS, targets, strict=False):
        panel.with_target(target.ref_id(ref))
    if unit:
        panel.unit(unit)


def ts(title: str, description: str, *targets: Dataquery, unit: str | None = None, w: int = 12, h: int = 8,
       stacked: bool = False, steps: bool = False, min_val: float | None = None, legend_table: bool = False
       ) -> timeseries.Panel:
    p = timeseries.Panel()
    _common(p, title, description, targets, w, h, unit)
    if stacked:
        p.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(40)
    if steps:
        p.line_interpolation(common.LineInterpolation.STEP_AFTER)
    if min_val is not None:
        p.min(min_val)
    if legend_table:
        p.legend(cb.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                 .placement(common.LegendPlacement.RIGHT).show_legend(True))
    return p


def single(title: str, description: str, target: Dataquery, unit: str | None = None, w: int = 6, h: int = 4,
           red_from: float | None = None) -> stat.Panel:
    """A stat; red from `red_from` on (green below), else the default colours."""
    p = stat.Panel()
    _common(p, title, description, [target], w, h, unit)
    p.graph_mode(common.BigValueGraphMode.AREA).reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
    if red_from is not None:
        p.thresholds(db.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
                     .steps([Threshold(None, "green"), Threshold(red_from, "red")]))
    return p


def states(title: str, description: str, target: Dataquery, labels: dict[str, tuple[str, str]], w: int = 12,
           h: int = 8) -> statetimeline.Panel:
    """A state timeline whose values are mapped to (text, colour)."""
    p = statetimeline.Panel()
    _common(p, title, description, [target], w, h, None)
    p.mappings([ValueMap({v: ValueMappingResult(text=text, color=color, index=i)
                          for i, (v, (text, color)) in enumerate(labels.items())})])
    return p


def grid(title: str, description: str, *columns: tuple[str, str], w: int = 24, h: int = 9) -> table.Panel:
    """A table of instant queries (column name, expr) joined on their labels (`merge`), the value
    columns named (`organize`: Grafana calls them "Value #A", "Value #B" ...)."""
    p = table.Panel()
    targets = [q(expr, name, instant=True, table_format=True) for name, expr in columns]
    _common(p, title, description, targets, w, h, None)
    names = {f"Value #{ref}": name for ref, (name, _) in zip(REFS, columns, strict=False)}
    p.with_transformation(DataTransformerConfig(id_val="merge", options={}))
    p.with_transformation(DataTransformerConfig(id_val="organize", options={
        "renameByName": names, "excludeByName": {"Time": True}}))
    return p


def board(uid: str, title: str, description: str, time_from: str) -> db.Dashboard:
    return (db.Dashboard(title).uid(uid).description(description).tags([TAG]).refresh("1m")
            .time(time_from, "now").timezone("utc").readonly()
            .link(db.DashboardLink("Email Engine").type(DashboardLinkType.DASHBOARDS).tags([TAG])
                  .as_dropdown(True).include_vars(False).keep_time(True))
            .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus")))


def label_variable(name: str, label: str, query: str) -> db.QueryVariable:
    """A multi-value variable over a label's values (`label_values(selector, label)`), All = `.*`."""
    return (db.QueryVariable(name).label(label).datasource(DS).query(query).multi(True).include_all(True)
            .all_value(".*").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC))
