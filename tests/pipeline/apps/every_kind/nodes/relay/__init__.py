from edgeflow import ConsumerNode


class Relay(ConsumerNode):
    def process(self, data):
        return data
