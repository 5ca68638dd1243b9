"""The image half of the original LLaVA code, which VLMEvalKit's llava_v1.5_7b runs; tests only.

Origin: https://github.com/haotian-liu/LLaVA at commit c121f0432da27facab705978f83c4ada465e46fd
(2024-05-12), file llava/mm_utils.py (expand2square, process_images). Licence: Apache License 2.0
(http://www.apache.org/licenses/LICENSE-2.0). Copied unchanged except that process_images keeps
only the "pad" branch (VLMEvalKit sets image_aspect_ratio = "pad") and returns the list of tensors.
"""
# ruff: noqa
from PIL import Image

COMMIT = "c121f0432da27facab705978f83c4ada465e46fd"


def expand2square(pil_img, background_color):
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result


def process_images(images, image_processor, model_cfg):
    image_aspect_ratio = getattr(model_cfg, "image_aspect_ratio", None)
    new_images = []
    if image_aspect_ratio == 'pad':
        for image in images:
            image = expand2square(image, tuple(int(x*255) for x in image_processor.image_mean))
            image = image_processor.preprocess(image, return_tensors='pt')['pixel_values'][0]
            new_images.append(image)
    return new_images
