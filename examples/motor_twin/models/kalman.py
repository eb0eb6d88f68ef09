"""A Kalman filter as a model block: it estimates a motor's true temperature from noisy readings and flags the
readings that do not fit (a residual beyond 3 sigma).

The model is a random walk, ``x[k] = x[k-1] + w`` (process noise variance ``process_noise``), observed with
noise, ``z[k] = x[k] + v`` (variance ``measurement_noise``). Per reading:

    predict     x_pred = x                     P_pred = P + Q
    residual    r = z - x_pred                 sigma = sqrt(P_pred + R)       (the innovation and its spread)
    anomaly     |r| > threshold * sigma        (threshold: 3)
    update      K = P_pred / (P_pred + R)      x = x_pred + K r               P = (1 - K) P_pred

An anomalous reading is flagged and not used for the estimate (a sensor glitch must not drag the twin):
the filter only predicts (P grows by Q). After ``reset_after`` anomalies in a row the motor really changed,
so the filter starts again from that reading. The first reading of an asset starts its filter (x = z,
P = R). Each asset (the reading's ``asset`` field, else the node's ``asset_id``) has a filter of its own.

Output per reading, PyEdgeTwin's fields (seed 004): ``raw_value``, ``twin_estimate``, ``anomaly_flag``,
``residual``; plus ``asset_id`` and the reading's ``seq`` when it has one.

Edit this file while the app runs and the node loads the new version between two messages (hot reload,
docs/models.md); the new version starts its filters afresh.
"""

from __future__ import annotations

import math

from edgeflow.models import ModelBlock, ModelBlockContext

__version__ = "1.0"


class KalmanFilter(ModelBlock):
    """One-dimensional Kalman filter with a 3-sigma anomaly flag (see the module docstring).

    Params: ``process_noise`` (Q, 0.01), ``measurement_noise`` (R, 0.09: a sensor good to 0.3 °C),
    ``threshold`` (3.0 sigmas), ``reset_after`` (5 anomalies in a row), ``field`` (the reading's value field,
    ``"value"``).
    """

    def init(self, context: ModelBlockContext) -> None:
        """Read the parameters; no asset has a filter yet."""
        self.q = float(context.get("process_noise", 0.01))
        self.r = float(context.get("measurement_noise", 0.09))
        self.threshold = float(context.get("threshold", 3.0))
        self.reset_after = int(context.get("reset_after", 5))
        self.field = str(context.get("field", "value"))
        self.asset_id = context.asset_id
        self.filters: dict[str, list[float]] = {}      # asset -> [x, P, anomalies in a row]

    def process(self, msg: dict) -> dict:
        """One reading in, the twin's estimate out."""
        z = float(msg[self.field])
        asset = str(msg.get("asset") or self.asset_id or "asset")
        state = self.filters.get(asset)
        if state is None:
            self.filters[asset] = [z, self.r, 0]
            return self._out(msg, asset, z, z, 0.0, False)
        x, p, run = state
        p_pred = p + self.q
        residual = z - x
        sigma = math.sqrt(p_pred + self.r)
        anomaly = abs(residual) > self.threshold * sigma
        if anomaly and run + 1 < self.reset_after:
            state[1], state[2] = p_pred, run + 1          # predict only: the reading is not believed
        elif anomaly:
            state[:] = [z, self.r, 0]                     # the motor really changed: start from here
        else:
            gain = p_pred / (p_pred + self.r)
            state[:] = [x + gain * residual, (1 - gain) * p_pred, 0]
        return self._out(msg, asset, z, state[0], residual, anomaly)

    @staticmethod
    def _out(msg: dict, asset: str, z: float, estimate: float, residual: float, anomaly: bool) -> dict:
        out = {"asset_id": asset, "raw_value": z, "twin_estimate": estimate, "residual": residual,
               "anomaly_flag": anomaly}
        if "seq" in msg:
            out["seq"] = msg["seq"]
        return out

    def get_state(self) -> dict:
        """Each asset's estimate and its variance."""
        return {asset: {"estimate": x, "variance": p} for asset, (x, p, _) in self.filters.items()}
