import asyncio

import pytest
from channels.layers import channel_layers


@pytest.mark.slow
def test_the_channel_layer_delivers_to_a_receiver_that_waited_longer_than_its_blocking_pop():
    """A receiver idle for more than the layer's 5 s blocking pop must still get messages (with
    redis-py's default read timeout it raised "Timeout reading from Redis" instead)."""

    async def scenario():
        # Its own instance: flush() closes the connection pools of every event loop that used
        # the instance, and the process's announcement sender keeps one on its own loop.
        layer = channel_layers.make_backend("default")
        channel = await layer.new_channel()

        async def send_later():
            await asyncio.sleep(6.5)
            await layer.send(channel, {"type": "stock.changed", "site": "ams"})

        sender = asyncio.create_task(send_later())
        message = await asyncio.wait_for(layer.receive(channel), timeout=20)
        await sender
        await layer.flush()
        return message

    assert asyncio.run(scenario()) == {"type": "stock.changed", "site": "ams"}
