import time
import numpy as np
import cv2
import os

from edgeflow import EdgeApp
from edgeflow.nodes import ProducerNode, ConsumerNode, GatewayNode
from edgeflow.nodes.gateway.interfaces.web import WebInterface
from edgeflow.comms import RedisBroker
from edgeflow.config import settings

# Initialize App
app = EdgeApp("test-distributed-system", broker=RedisBroker())

# 1. Producer: Fake Camera with Animation
@app.node(name="fake_camera", type="producer", device="camera", fps=30)
class FakeCamera(ProducerNode):
    def configure(self):
        self.hostname = os.getenv("HOSTNAME", "unknown-host")

    def produce(self):
        # Generate moving ball animation
        img = np.zeros((480, 640, 3), dtype=np.uint8)
        img[:] = (30, 30, 30)
        
        t = time.time()
        cx = int(320 + 200 * np.sin(t * 2))
        cy = int(240 + 100 * np.cos(t * 2))
        cv2.circle(img, (cx, cy), 30, (0, 255, 255), -1)
        
        cv2.putText(img, f"Src: {self.hostname}", (10, 30), 
                    cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        return img

# 2. Consumer: GPU Processing Simulation
@app.node(name="gpu_processor", type="consumer", device="gpu", replicas=2)
class GpuProcessor(ConsumerNode):
    def configure(self):
        self.hostname = os.getenv("HOSTNAME", "unknown-host")

    def process(self, frame):
        processed_img = frame.copy()
        # Draw bounding box (Simulating Object Detection)
        cv2.rectangle(processed_img, (150, 100), (490, 380), (0, 0, 255), 3)
        cv2.putText(processed_img, "AI DETECTED", (150, 90), 
                    cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2)
        return processed_img

# 3. Gateway: Web Visualization
@app.node(name="gateway", type="gateway", node_port=30080)
class VideoGateway(GatewayNode):
    def configure(self):
        web = WebInterface(port=settings.GATEWAY_HTTP_PORT)
        self.add_interface(web)

# 4. Define Flow & Run
if __name__ == "__main__":
    # Chain: Camera -> GPU -> Gateway
    app.link("fake_camera").to("gpu_processor")
    app.link("gpu_processor").to("gateway")
    
    # Direct: Camera -> Gateway (Raw View)
    app.link("fake_camera").to("gateway")
    
    app.run()
