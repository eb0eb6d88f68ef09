"""The motor twin's model blocks (``models.kalman:KalmanFilter``)."""
