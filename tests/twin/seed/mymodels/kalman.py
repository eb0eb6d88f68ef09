# The model block of PyEdgeTwin's README (seed 004, copied here), as written there.
from pyedgetwin.models.base import ModelBlock, ModelBlockContext

class KalmanFilter(ModelBlock):
    def init(self, context: ModelBlockContext) -> None:
        self.Q = context.config.get("process_noise", 0.01)
        self.R = context.config.get("measurement_noise", 0.1)
        self.x = 0.0  # State estimate
        self.P = 1.0  # Error covariance

    def process(self, msg: dict) -> dict:
        z = msg.get("value", 0.0)

        # Prediction
        x_pred, P_pred = self.x, self.P + self.Q

        # Update
        K = P_pred / (P_pred + self.R)
        self.x = x_pred + K * (z - x_pred)
        self.P = (1 - K) * P_pred

        return {
            "raw_value": z,
            "twin_estimate": self.x,
            "anomaly_flag": abs(z - self.x) > 3 * (P_pred + self.R) ** 0.5,
            "residual": z - self.x,
        }

    def shutdown(self) -> None:
        pass
